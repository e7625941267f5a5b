"""The nbgrader course: the shipped course folder is up to date, the student versions come from nbgrader, and made-up
submissions (right, unanswered, wrong, import-only, endless, broken, with a test cell deleted) autograde to the
expected scores and feedback, run as the console script of an environment that is not activated."""

import csv
import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from minicfg import assignments, checks, cli

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "course"
FAST = "01_forward_process_and_log_snr"  # the assignment autograded here: about 10 s per run in smoke mode
BARE_PATH = "/usr/bin:/bin"  # a PATH without the environment's bin folder, where nbgrader's `alembic` lives


def _minicfg(*args: str) -> subprocess.CompletedProcess:
    """``minicfg ARGS`` as a new process: this environment's console script (``.venv/bin/minicfg``) with
    ``PATH=/usr/bin:/bin``, as when it is run without activating the environment; this checkout first on the path."""
    script = Path(sys.executable).parent / "minicfg"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "minicfg"]
    env = {**os.environ, "PATH": BARE_PATH,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command + list(args), env=env, capture_output=True, text=True, timeout=900)


def test_the_course_folder_is_up_to_date_with_the_notebooks(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(COURSE / assignments.CONFIG, course)
    written = assignments.write_source(ROOT / "notebooks", course)
    fresh = {p.relative_to(course): p.read_bytes() for p in written}
    shipped = {p.relative_to(COURSE): p.read_bytes() for p in (COURSE / "source").glob("*/*")}
    stale = sorted(str(p) for p in fresh.keys() | shipped.keys() if fresh.get(p) != shipped.get(p))
    assert not stale, f"course/source is stale ({', '.join(stale)}): run `minicfg assignments source`"
    assert {p.parent.name for p in written} == {f"0{i}_{s}" for i, s in (
        (1, "forward_process_and_log_snr"), (2, "reverse_process_and_samplers"), (3, "guidance_toy_exact_scores"),
        (4, "classifier_guidance"), (5, "cfg_training"), (6, "cfg_sampling"), (7, "fid_is_tradeoff"), (8, "cifar10"),
        (9, "beyond_cfg"))}


def test_the_source_command_writes_the_assignments_without_outputs(tmp_path, capsys):
    """`minicfg assignments source`: a course folder with one assignment per notebook that has nbgrader cells,
    each cell as in the notebook but with no outputs; a folder no notebook produces is removed; a folder that is
    not a course is refused."""
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(COURSE / assignments.CONFIG, course)
    (course / "source" / "retired").mkdir(parents=True)
    assert cli.main(["assignments", "source", "--notebooks", str(ROOT / "notebooks"), "--course", str(course)]) == 0
    graded = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")
                    if any("nbgrader" in c.metadata for c in _cells(p)))
    assert capsys.readouterr().out.strip() == (f"wrote {len(graded)} assignments to {course / 'source'}: "
                                               + ", ".join(graded))
    assert sorted(p.name for p in (course / "source").iterdir()) == graded  # "retired" is gone
    for name in graded:
        original = _cells(ROOT / "notebooks" / f"{name}.ipynb")
        copy = _cells(course / "source" / name / f"{name}.ipynb")
        assert [c.source for c in copy] == [c.source for c in original]
        assert [c.metadata.get("nbgrader") for c in copy] == [c.metadata.get("nbgrader") for c in original]
        assert not any(c.get("outputs") or c.get("execution_count") for c in copy)
        assert "widgets" not in nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4).metadata
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["assignments", "source", "--course", str(tmp_path / "not-a-course")])
    assert exit_info.value.code == 2 and "no nbgrader course folder at" in capsys.readouterr().err


def _cells(path):
    return nbformat.read(path, as_version=4).cells


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`minicfg assignments build` run without an activated environment (nbgrader finds its `alembic` all the same)."""
    out = tmp_path_factory.mktemp("built") / "course"
    result = _minicfg("assignments", "build", "--out", str(out), "--course", str(COURSE))
    assert result.returncode == 0, result.stderr
    assert "without encryption" not in result.stdout + result.stderr
    return out


def test_build_writes_student_versions_through_nbgrader(built):
    released = sorted(built.glob("release/*/*.ipynb"))
    assert [p.parent.name for p in released] == assignments.assignment_names(COURSE)
    assert (built / "gradebook.db").is_file()
    exercises = set()
    for path in released:
        source_cells = _cells(COURSE / "source" / path.parent.name / path.name)
        source = {c.metadata["nbgrader"]["grade_id"]: c for c in source_cells if "nbgrader" in c.metadata}
        for cell in _cells(path):
            assert cell.cell_type != "code" or (cell.outputs == [] and cell.execution_count is None)
            meta = cell.metadata.get("nbgrader")
            if meta is None:
                continue
            original = source[meta["grade_id"]].source
            if meta["solution"]:
                head = original.split("### BEGIN SOLUTION")[0]
                assert cell.source == head + "# YOUR CODE HERE\n    raise NotImplementedError()", meta["grade_id"]
                assert '"""' in head and head.count("def ") == 1  # the signature and docstring stay
            else:
                assert meta["grade"] and meta["locked"] and cell.source == original
                exercises.add(meta["grade_id"])
    assert exercises == set(checks.EXERCISES)


def test_build_refuses_a_folder_that_holds_a_course(built):
    with pytest.raises(FileExistsError, match="already holds an nbgrader course"):
        assignments.build(built, COURSE)


def _submission(root: Path, student: str, nb) -> None:
    folder = root / student / FAST
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{FAST}.ipynb")


def _solution(nb, exercise: str):
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == f"{exercise}_solution"]
    return cell


def _made_up_submissions(built: Path) -> dict[str, nbformat.NotebookNode]:
    """student -> notebook 01 as they hand it in."""

    def reference():
        return nbformat.read(COURSE / "source" / FAST / f"{FAST}.ipynb", as_version=4)

    made = {"ada": reference(), "bob": nbformat.read(built / "release" / FAST / f"{FAST}.ipynb", as_version=4)}
    made["cy"] = reference()  # one mistake, with a hint for it
    cell = _solution(made["cy"], "q_sample")
    cell.source = cell.source.replace("alpha * x + sigma * eps", "alpha**2 * x + sigma**2 * eps")
    made["dee"] = reference()  # the library's functions imported as the answers
    for exercise, module in (("alpha_sigma", "schedules"), ("q_sample", "diffusion"), ("log_snr_cosine", "schedules")):
        _solution(made["dee"], exercise).source = f"from minicfg.{module} import {exercise}"
    made["eve"] = reference()  # q_sample never returns
    cell = _solution(made["eve"], "q_sample")
    cell.source = cell.source.replace("### BEGIN SOLUTION\n", "### BEGIN SOLUTION\n    while True:\n        pass\n")
    made["fay"] = reference()  # a cell that fails at its import
    cell = _solution(made["fay"], "log_snr_cosine")
    cell.source = "import minicfg.no_such_module\n" + cell.source
    made["gus"] = reference()  # alpha_sigma's test cell deleted
    made["gus"].cells = [c for c in made["gus"].cells
                         if c.metadata.get("nbgrader", {}).get("grade_id") != "alpha_sigma"]
    return made


def _text(path: Path) -> str:
    """The text of an HTML page, tags removed."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_autograde_made_up_submissions(built, tmp_path):
    """The reference solutions score full marks; nbgrader's untouched stubs nothing; a mistake, the library imported as
    the answer, an endless loop (stopped by the 20 s cell timeout), a failing import and a deleted test cell lose
    the exercise they break, and the others still score; a file nbgrader cannot read scores 0 and is reported, and
    the others are graded all the same. The feedback shows each check's message.

    Slow: 110-135 s on two shared cores (eight notebooks in two processes, 20 s of them waiting on the loop)."""
    submissions = tmp_path / "submitted"
    for student, nb in _made_up_submissions(built).items():
        _submission(submissions, student, nb)
    (submissions / "hal" / FAST).mkdir(parents=True)  # a file that is not a notebook: nbgrader cannot grade it
    (submissions / "hal" / FAST / f"{FAST}.ipynb").write_text("{ this is not JSON")
    out, feedback = tmp_path / "scores.csv", tmp_path / "feedback"
    start = time.perf_counter()
    result = _minicfg("assignments", "grade", str(submissions), "--course", str(COURSE), "--csv", str(out),
                      "--timeout", "20", "--jobs", "2", "--feedback", str(feedback))
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert elapsed < assignments.SMOKE_TIMEOUT  # the endless cell was stopped by --timeout, not by the default
    assert "without encryption" not in result.stdout + result.stderr  # kernels do not warn about plain TCP
    with open(out, newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    graded = ("alpha_sigma", "q_sample", "log_snr_cosine")  # the exercises of notebook 01
    assert {s: [float(rows[s][e]) for e in graded] for s in rows} == {
        "ada": [1.0, 1.0, 1.0], "bob": [0.0, 0.0, 0.0], "cy": [1.0, 0.0, 1.0], "dee": [0.0, 0.0, 0.0],
        "eve": [1.0, 0.0, 1.0], "fay": [1.0, 1.0, 0.0], "gus": [0.0, 1.0, 1.0], "hal": [0.0, 0.0, 0.0]}
    assert {s: rows[s]["not_graded"] for s in rows if rows[s]["not_graded"]} == {"hal": FAST}
    assert re.search(rf"NOT GRADED \(scored 0\): {FAST} of hal: .*NotJSONError", result.stderr)  # nbgrader's reason
    assert [float(rows[s]["total"]) for s in ("ada", "bob", "cy")] == [3.0, 0.0, 2.0]
    assert all(rows[s][e] == "" for s in rows for e in checks.EXERCISES if e not in graded)  # not submitted
    page = {s: _text(feedback / s / FAST / f"{FAST}.html") for s in rows if s != "hal"}
    assert "hint: your result matches a known mistake: alpha^2 used where alpha was meant" in page["cy"]
    for exercise, module in (("alpha_sigma", "schedules"), ("q_sample", "diffusion"), ("log_snr_cosine", "schedules")):
        assert (f"{exercise}: write {exercise} yourself; the library's own minicfg.{module}.{exercise} is not "
                f"allowed here") in page["dee"]
    assert "q_sample was interrupted on the input 'a batch of one'" in page["eve"]
    assert "ModuleNotFoundError: No module named 'minicfg.no_such_module'" in page["fay"]
    assert "alpha_sigma: all 5 inputs pass" in page["ada"] and "known mistake" not in page["ada"]


def test_the_cell_timeout_comes_from_the_option_else_the_course_config(tmp_path):
    assert assignments.grade_timeout(COURSE, smoke=False) == 1800  # course/nbgrader_config.py
    assert assignments.grade_timeout(COURSE, smoke=True) == assignments.SMOKE_TIMEOUT == 300
    assert assignments.grade_timeout(COURSE, smoke=False, timeout=20) == 20
    (tmp_path / assignments.CONFIG).write_text("c = get_config()\nc.Execute.timeout = 120\n")
    assert assignments.grade_timeout(tmp_path, smoke=True) == 120  # a stricter course config wins in smoke mode
    (tmp_path / assignments.CONFIG).write_text("c = get_config()\n")
    assert assignments.grade_timeout(tmp_path, smoke=False) == 30  # nbgrader's own default
    with pytest.raises(ValueError, match="positive number of seconds"):
        assignments.grade_timeout(COURSE, timeout=0)


def test_grade_rejects_an_unknown_assignment(tmp_path):
    (tmp_path / "ada" / "99_nothing").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "ada" / "99_nothing" / "x.ipynb")
    with pytest.raises(ValueError, match=r"unknown assignment 99_nothing .* the course has 01_forward"):
        assignments.grade(tmp_path, COURSE)
