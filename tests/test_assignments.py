"""The nbgrader course: the shipped course folder is up to date, the student versions come from nbgrader, and three
made-up submissions autograde to the expected scores."""

import csv
import shutil
from pathlib import Path

import nbformat
import pytest

from minicfg import assignments, checks, cli

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "course"
FAST = "01_forward_process_and_log_snr"  # the assignment autograded here: about 10 s per run in smoke mode


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


def _cells(path):
    return nbformat.read(path, as_version=4).cells


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "course"
    assert cli.main(["assignments", "build", "--out", str(out), "--course", str(COURSE)]) == 0
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


def test_autograde_three_made_up_submissions(built, tmp_path):
    """The reference solutions score full marks, nbgrader's untouched stubs nothing, one mistake loses that exercise."""
    reference = nbformat.read(COURSE / "source" / FAST / f"{FAST}.ipynb", as_version=4)
    stubs = nbformat.read(built / "release" / FAST / f"{FAST}.ipynb", as_version=4)
    wrong = nbformat.read(COURSE / "source" / FAST / f"{FAST}.ipynb", as_version=4)
    (cell,) = [c for c in wrong.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "q_sample_solution"]
    cell.source = cell.source.replace("alpha * x + sigma * eps", "alpha**2 * x + sigma**2 * eps")
    submissions = tmp_path / "submitted"
    for student, nb in (("ada", reference), ("bob", stubs), ("cy", wrong)):
        _submission(submissions, student, nb)
    out = tmp_path / "scores.csv"
    assert cli.main(["assignments", "grade", str(submissions), "--course", str(COURSE), "--csv", str(out)]) == 0
    with open(out, newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    graded = ("alpha_sigma", "q_sample", "log_snr_cosine")  # the exercises of notebook 01
    assert {s: [float(rows[s][e]) for e in graded] for s in rows} == {
        "ada": [1.0, 1.0, 1.0], "bob": [0.0, 0.0, 0.0], "cy": [1.0, 0.0, 1.0]}
    assert [float(rows[s]["total"]) for s in ("ada", "bob", "cy")] == [3.0, 0.0, 2.0]
    assert all(rows[s][e] == "" for s in rows for e in checks.EXERCISES if e not in graded)  # not submitted


def test_grade_rejects_an_unknown_assignment(tmp_path):
    (tmp_path / "ada" / "99_nothing").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "ada" / "99_nothing" / "x.ipynb")
    with pytest.raises(ValueError, match=r"unknown assignment 99_nothing .* the course has 01_forward"):
        assignments.grade(tmp_path, COURSE)
