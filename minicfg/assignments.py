"""Course assignments on nbgrader: the course folder from the notebooks, the student versions, autograding.

The exercises live in the main notebooks as nbgrader cells (a solution cell with ``### BEGIN SOLUTION`` /
``### END SOLUTION``, then a locked, graded test cell that calls :mod:`minicfg.checks`). Everything else is
nbgrader's own work: :func:`write_source` copies each notebook with exercises into the course folder's
``source/<assignment>/`` (one assignment per notebook, outputs cleared); :func:`build` runs ``nbgrader
generate_assignment`` on a copy of the course folder, which writes the student versions to ``release/``;
:func:`grade` runs ``nbgrader autograde`` on collected submissions in a throw-away course folder and reads the
scores from its gradebook. ``docs/instructors.md`` describes the workflow.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

__all__ = ["exercise_notebooks", "write_source", "assignment_names", "build", "grade", "score_table"]

CONFIG = "nbgrader_config.py"


def _require_nbgrader() -> None:
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        raise RuntimeError("nbgrader is not installed: pip install -e \".[dev]\" (or pip install nbgrader)") from None


def _nbgrader_cells(nb) -> list[dict]:
    return [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.get("metadata", {})]


def exercise_notebooks(notebooks: str | Path = "notebooks") -> list[Path]:
    """The notebooks in the folder ``notebooks`` that hold nbgrader cells, in name order."""
    import nbformat

    folder = Path(notebooks)
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebook folder at {folder}: run this in the repository or pass --notebooks")
    return [p for p in sorted(folder.glob("*.ipynb")) if _nbgrader_cells(nbformat.read(p, as_version=4))]


def write_source(notebooks: str | Path = "notebooks", course: str | Path = "course") -> list[Path]:
    """Write ``course/source/<stem>/<stem>.ipynb`` for each notebook with exercises, with nbgrader's ClearOutput
    (outputs and execution counts removed, so the copy changes only when the notebook's cells do).

    Assignment folders under ``course/source`` that no notebook produces any more are removed. Returns the written
    paths."""
    _require_nbgrader()
    import nbformat
    from nbgrader.preprocessors import ClearOutput

    source = _course(course) / "source"
    written = []
    for path in exercise_notebooks(notebooks):
        nb = nbformat.read(path, as_version=4)
        nb, _ = ClearOutput().preprocess(nb, {})
        for cell in nb.cells:
            cell.metadata.pop("execution", None)  # timestamps of the last run
        out = source / path.stem / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
        written.append(out)
    for stale in sorted(p for p in source.iterdir() if p.is_dir() and p.name not in {w.parent.name for w in written}):
        shutil.rmtree(stale)
    return written


def _course(course: str | Path) -> Path:
    course = Path(course)
    if not (course / CONFIG).is_file():
        raise FileNotFoundError(f"no nbgrader course folder at {course} (it has no {CONFIG}): run this from the "
                                f"repository root or pass --course")
    return course


def assignment_names(course: str | Path = "course") -> list[str]:
    """The assignments of the course folder: the folders under ``source/`` that hold a notebook."""
    return sorted(p.parent.name for p in (_course(course) / "source").glob("*/*.ipynb"))


def _api(root: Path):
    """nbgrader's API on the course folder ``root``, configured by its ``nbgrader_config.py``."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader(CONFIG, path=str(root)).load_config()
    config.CourseDirectory.root = str(root.resolve())
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _run(what: str, result: dict) -> None:
    if not result.get("success"):
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('error') or ''}{result.get('log') or ''}")


def build(out: str | Path, course: str | Path = "course") -> list[Path]:
    """An nbgrader course folder at ``out``: the course's config and sources, the gradebook, and the student
    version of every assignment in ``out/release/<assignment>/`` written by ``nbgrader generate_assignment``.

    In the student versions each solution region is replaced by nbgrader's ``raise NotImplementedError()`` (the
    signature and docstring above it stay), outputs are cleared and the test cells are locked. Returns their paths.
    """
    _require_nbgrader()
    course, out = _course(course), Path(out)
    if (out / "source").exists() or (out / "gradebook.db").exists():
        raise FileExistsError(f"{out} already holds an nbgrader course; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(course / CONFIG, out / CONFIG)
    shutil.copytree(course / "source", out / "source")
    api = _api(out)
    names = assignment_names(out)
    for name in names:
        _run(f"generate_assignment {name}", api.generate_assignment(name))
    return sorted(p for name in names for p in (out / "release" / name).glob("*.ipynb"))


@contextmanager
def _environment(**values: str):
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _submissions(submissions: Path, known: list[str]) -> list[tuple[str, str, Path]]:
    """(student, assignment, folder) of every ``SUBMISSIONS/<student>/<assignment>/`` that holds a notebook."""
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions folder at {submissions}")
    found = sorted((p.parent.parent.name, p.parent.name, p.parent) for p in submissions.glob("*/*/*.ipynb"))
    found = sorted(set(found))
    if not found:
        raise ValueError(f"no submissions in {submissions}: expected STUDENT/ASSIGNMENT/NOTEBOOK.ipynb, as in "
                         f"nbgrader's submitted/ folder, with ASSIGNMENT one of {', '.join(known)}")
    unknown = sorted({a for _, a, _ in found} - set(known))
    if unknown:
        raise ValueError(f"unknown assignment {', '.join(unknown)} in {submissions}; the course has "
                         f"{', '.join(known)}")
    return found


def grade(submissions: str | Path, course: str | Path = "course", csv_path: str | Path | None = None,
          smoke: bool = True) -> tuple[list[str], list[dict]]:
    """Autograde ``SUBMISSIONS/<student>/<assignment>/*.ipynb`` with ``nbgrader autograde`` in a temporary course
    folder (no gradebook is kept) and return ``(exercises, rows)``: one row per student with the score of each
    exercise (None where the assignment was not submitted), ``total`` and ``max``.

    ``smoke`` runs the submissions in smoke mode (``MINICFG_SMOKE=1``): the checks do not depend on the notebooks'
    loop sizes, and a notebook then takes about a minute. ``csv_path`` also writes the table as CSV.
    """
    found = _submissions(Path(submissions), assignment_names(course))
    with tempfile.TemporaryDirectory(prefix="minicfg_grade_") as tmp:
        root = Path(tmp) / "course"
        build(root, course)
        from nbgrader.api import Gradebook

        for student, assignment, folder in found:
            shutil.copytree(folder, root / "submitted" / student / assignment)
        api = _api(root)
        with _environment(MINICFG_SMOKE="1" if smoke else "0"), warnings.catch_warnings():
            # nbgrader's autograde trips SQLAlchemy's autoflush warnings (its own, harmless)
            warnings.filterwarnings("ignore", message=".*not in session.*")
            for student, assignment, _ in found:
                _run(f"autograde {assignment} for {student}", api.autograde(assignment, student))
        with Gradebook(api.coursedir.db_url) as gb:
            cells = {a.name: [(c.name, c.max_score) for nb in a.notebooks for c in nb.grade_cells]
                     for a in gb.assignments}
            scores = {(s, a): {g.name: g.score for nb in gb.find_submission(a, s).notebooks for g in nb.grades
                               if g.max_score > 0}
                      for s, a, _ in found}
    exercises = _order([name for cells_of in cells.values() for name, _ in cells_of])
    max_score = {name: points for cells_of in cells.values() for name, points in cells_of}
    rows = []
    for student in sorted({s for s, _, _ in found}):
        row = {"student": student}
        for assignment, cells_of in sorted(cells.items()):
            got = scores.get((student, assignment))
            for name, _ in cells_of:
                row[name] = None if got is None else got[name]
        row["total"] = sum(v for k, v in row.items() if k in max_score and v is not None)
        row["max"] = sum(max_score.values())
        rows.append(row)
    if csv_path is not None:
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, ["student", *exercises, "total", "max"])
            writer.writeheader()
            writer.writerows(rows)
    return exercises, rows


def _order(names: list[str]) -> list[str]:
    """Exercises in teaching order (that of :data:`minicfg.checks.EXERCISES`), any others after them."""
    from .checks import EXERCISES

    rank = {name: i for i, name in enumerate(EXERCISES)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def score_table(exercises: list[str], rows: list[dict]) -> str:
    """The scores as a text table: a row per student, a column per exercise ('-': not submitted)."""
    header = ["student", *exercises, "total"]
    body = [[row["student"], *("-" if row[e] is None else f"{row[e]:g}" for e in exercises),
             f"{row['total']:g}/{row['max']:g}"] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths,
                                                                                                    strict=True)))
                     for line in [header, *body])
