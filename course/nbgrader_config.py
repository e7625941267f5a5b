"""nbgrader configuration of the minicfg course folder (docs/instructors.md).

source/<assignment>/ is written from the notebooks by `minicfg assignments source`; do not edit it by hand.
"""

import zmq
from jupyter_client.manager import KernelManager

c = get_config()  # provided by nbgrader (traitlets) when it reads this file

c.CourseDirectory.course_id = "minicfg"
# a notebook cell may run for minutes outside smoke mode (notebooks 04 and 05 train networks live)
c.Execute.timeout = 1800
# kernels speak to nbgrader encrypted (CurveZMQ keys from the kernel manager) where jupyter_client and the kernel
# support it, rather than in plain TCP, about which each kernel would print a warning
if "transport_encryption" in KernelManager.class_trait_names() and zmq.has("curve"):
    c.KernelManager.transport_encryption = "auto"
