"""nbgrader configuration of the minicfg course folder (docs/instructors.md).

source/<assignment>/ is written from the notebooks by `minicfg assignments source`; do not edit it by hand.
"""

c = get_config()  # provided by nbgrader (traitlets) when it reads this file

c.CourseDirectory.course_id = "minicfg"
# a notebook cell may run for minutes outside smoke mode (notebooks 04 and 05 train networks live)
c.Execute.timeout = 1800
