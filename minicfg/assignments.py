"""Course assignments on nbgrader: the course folder from the notebooks, the student versions, autograding.

The exercises live in the main notebooks as nbgrader cells (a solution cell with ``### BEGIN SOLUTION`` /
``### END SOLUTION``, then a locked, graded test cell that calls :mod:`minicfg.checks`). Everything else is
nbgrader's own work: :func:`write_source` copies each notebook with exercises into the course folder's
``source/<assignment>/`` (one assignment per notebook, outputs cleared); :func:`build` runs ``nbgrader
generate_assignment`` on a copy of the course folder, which writes the student versions to ``release/``;
:func:`grade` runs ``nbgrader autograde`` (and optionally ``generate_feedback``) on collected submissions in a
throw-away course folder, in parallel processes if asked, and reads the scores from the gradebooks.
``docs/instructors.md`` describes the workflow.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import shutil
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

__all__ = ["exercise_notebooks", "write_source", "assignment_names", "build", "grade", "grade_timeout",
           "score_table"]

CONFIG = "nbgrader_config.py"
#: Seconds a cell may run when grading in smoke mode, unless the course config allows less or --timeout says
#: otherwise: the slowest smoke-mode cell (notebook 04's classifier training) took 56 s on two busy CPU cores.
SMOKE_TIMEOUT = 300


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
    (outputs, execution counts and the saved widget state removed, so the copy changes only when the notebook's
    cells do).

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
        nb.metadata.pop("widgets", None)  # the widget state of the last run: outputs, not the assignment
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


def _config(root: Path):
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(CONFIG, path=str(root)).load_config()


def _api(root: Path, timeout: int | None = None):
    """nbgrader's API on the course folder ``root``, configured by its ``nbgrader_config.py`` (and ``timeout``, the
    seconds a cell may run, if given)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = _config(root)
    config.CourseDirectory.root = str(root.resolve())
    if timeout is not None:
        config.Execute.timeout = timeout
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


@contextmanager
def _nbgrader_environment(**values: str):
    """``os.environ`` as nbgrader needs it while it works: ``values``, and this Python's ``bin`` folder first on
    ``PATH``, since nbgrader's gradebook runs the ``alembic`` executable through ``PATH`` (so ``.venv/bin/minicfg``
    works without an activated environment)."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if here not in path.split(os.pathsep):
        values = {**values, "PATH": os.pathsep.join(p for p in (here, path) if p)}
    with _environment(**values):
        yield


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
    with _nbgrader_environment():
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


def grade_timeout(course: str | Path = "course", smoke: bool = True, timeout: int | None = None) -> int:
    """The seconds a cell may run when grading: ``timeout`` if given, else the course config's ``Execute.timeout``
    (nbgrader's default where it sets none), capped at :data:`SMOKE_TIMEOUT` in smoke mode."""
    if timeout is not None:
        if timeout <= 0:
            raise ValueError(f"the cell timeout must be a positive number of seconds, got {timeout}")
        return timeout
    from nbgrader.preprocessors import Execute

    configured = _config(_course(course)).Execute.get("timeout", Execute.timeout.default_value)
    return min(configured, SMOKE_TIMEOUT) if smoke else configured


def _reason(result: dict) -> str:
    """Why nbgrader could not grade a notebook: the exception its log's traceback ends with, else its first error."""
    lines = (result.get("log") or "").splitlines()
    traceback = [line.strip() for line in lines if line.startswith((" ", "\t")) and line.strip()]
    generic = ("There was an error processing", "Please see the", "Traceback")
    errors = [line for line in lines if line.startswith("[ERROR]") and not any(g in line for g in generic)]
    return traceback[-1] if traceback else errors[0] if errors else "nbgrader gave no reason"


def _autograde(root: Path, found: list[tuple[str, str, Path]], smoke: bool, timeout: int, feedback: Path | None,
               progress: bool = False) -> tuple[dict[tuple[str, str], dict[str, float]], dict[tuple[str, str], str]]:
    """Autograde ``found`` in the built course folder ``root`` (and write its feedback to ``feedback``); the scores
    {(student, assignment): {exercise: score}} and, for the notebooks nbgrader could not grade at all (not valid
    JSON, say), {(student, assignment): why}. (nbgrader scores a deleted test cell 0.) ``progress`` prints a
    line per notebook."""
    import time

    from nbgrader.api import Gradebook

    for student, assignment, folder in found:
        shutil.copytree(folder, root / "submitted" / student / assignment)
    api = _api(root, timeout)
    with _nbgrader_environment(MINICFG_SMOKE="1" if smoke else "0"), warnings.catch_warnings():
        # nbgrader's autograde trips SQLAlchemy's autoflush warnings (its own, harmless)
        warnings.filterwarnings("ignore", message=".*not in session.*")
        failed = {}
        for student, assignment, _ in found:
            t = time.perf_counter()
            result = api.autograde(assignment, student)
            if not result.get("success"):
                failed[student, assignment] = _reason(result)
                if progress:
                    print(f"  {assignment} of {student} NOT graded: {failed[student, assignment]}", flush=True)
                continue
            if feedback is not None:
                _run(f"generate_feedback {assignment} for {student}", api.generate_feedback(assignment, student))
                shutil.copytree(root / "feedback" / student / assignment, feedback / student / assignment,
                                dirs_exist_ok=True)
            if progress:
                print(f"  {assignment} of {student} graded in {time.perf_counter() - t:.0f} s", flush=True)
        with Gradebook(api.coursedir.db_url) as gb:
            return {(s, a): {g.name: g.score for nb in gb.find_submission(a, s).notebooks for g in nb.grades
                             if g.max_score > 0}
                    for s, a, _ in found if (s, a) not in failed}, failed


def _autograde_copy(built: Path, part: Path, *args):
    """:func:`_autograde` in ``part``, a copy of the built course folder (one per parallel job)."""
    shutil.copytree(built, part)
    return _autograde(part, *args)


def grade(submissions: str | Path, course: str | Path = "course", csv_path: str | Path | None = None,
          smoke: bool = True, timeout: int | None = None, feedback: str | Path | None = None,
          jobs: int = 1, progress: bool = False) -> tuple[list[str], list[dict]]:
    """Autograde ``SUBMISSIONS/<student>/<assignment>/*.ipynb`` with ``nbgrader autograde`` in a temporary course
    folder (no gradebook is kept) and return ``(exercises, rows)``: one row per student with the score of each
    exercise (None where the assignment was not submitted), ``total``, ``max`` and ``not_graded``, {assignment: why}
    for the notebooks nbgrader could not grade at all (they score 0; the others are graded all the same).

    ``smoke`` runs the submissions in smoke mode (``MINICFG_SMOKE=1``): the checks do not depend on the notebooks'
    loop sizes, and a notebook then takes about a minute. A cell that runs longer than ``timeout`` seconds
    (:func:`grade_timeout`) is interrupted and the notebook goes on from the next cell. ``feedback`` is a folder
    for nbgrader's HTML feedback, ``FEEDBACK/<student>/<assignment>/<notebook>.html``. ``jobs`` processes grade
    at once, each in its own copy of the course folder. ``csv_path`` also writes the table as CSV; ``progress``
    prints a line per notebook graded.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    found = _submissions(Path(submissions), assignment_names(course))
    timeout = grade_timeout(course, smoke, timeout)
    feedback = None if feedback is None else Path(feedback).resolve()
    with tempfile.TemporaryDirectory(prefix="minicfg_grade_") as tmp:
        root = Path(tmp) / "course"
        build(root, course)
        from nbgrader.api import Gradebook

        with _nbgrader_environment(), Gradebook(_api(root).coursedir.db_url) as gb:
            cells = {a.name: [(c.name, c.max_score) for nb in a.notebooks for c in nb.grade_cells]
                     for a in gb.assignments}
        parts = [found[i::jobs] for i in range(min(jobs, len(found)))]
        if len(parts) == 1:
            scores, failed = _autograde(root, found, smoke, timeout, feedback, progress)
        else:  # fresh interpreters: nbgrader's kernels and traitlets singletons do not survive a fork well
            with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_autograde_copy, root, Path(tmp) / f"job{i}", part, smoke, timeout, feedback,
                                       progress) for i, part in enumerate(parts)]
                results = [future.result() for future in futures]
            scores = {key: value for part, _ in results for key, value in part.items()}
            failed = {key: value for _, part in results for key, value in part.items()}
    exercises = _order([name for cells_of in cells.values() for name, _ in cells_of])
    max_score = {name: points for cells_of in cells.values() for name, points in cells_of}
    rows = []
    for student in sorted({s for s, _, _ in found}):
        row = {"student": student}
        for assignment, cells_of in sorted(cells.items()):
            got = {} if (student, assignment) in failed else scores.get((student, assignment))
            for name, _ in cells_of:
                row[name] = None if got is None else got.get(name, 0.0)
        row["total"] = sum(v for k, v in row.items() if k in max_score and v is not None)
        row["max"] = sum(max_score.values())
        row["not_graded"] = {a: why for (s, a), why in sorted(failed.items()) if s == student}
        rows.append(row)
    if csv_path is not None:
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, ["student", *exercises, "total", "max", "not_graded"])
            writer.writeheader()
            writer.writerows({**row, "not_graded": " ".join(row["not_graded"])} for row in rows)
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
