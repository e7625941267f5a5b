"""Running the notebooks in full, and tidying the progress bars that a headless run stores (``minicfg notebooks``).

A notebook executed without a browser (nbclient, ``jupyter nbconvert --execute``) stores each ``tqdm.auto`` bar as
an ipywidgets output whose text fallback is the bar's first line, ``0%|          | 0/300``: the bar moves later
through widget messages, which only the run's saved widget state (``metadata.widgets``) records. A reader of the
committed notebook on GitHub, or in JupyterLab before the widgets load, would see every loop stuck at 0%.
:func:`tidy_progress_bars` rewrites each bar's text from that saved state as the bar ended (its texts, count and
fraction), and drops the bars that tqdm closed (``leave=False``): with ipywidgets 8 such a bar stays in the saved
state, its box's layout hidden. :func:`run_notebook` executes a notebook as the committed outputs are made (the full
run, smoke mode off, in the notebook's folder, widget state stored) and tidies it.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Tidied", "bar_text", "find_notebooks", "run_notebook", "tidy_file", "tidy_progress_bars"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_REF = re.compile(r"IPY_MODEL_([0-9a-f]+)")
#: tqdm's text meter: "desc:  40%|████      | 4/10 [...]" (the percentage right before the bar)
_METER = re.compile(r"\d+%\|")


@dataclass
class Tidied:
    """What :func:`tidy_progress_bars` changed: bars whose text it rewrote, closed bars it dropped."""

    rewritten: int = 0
    dropped: int = 0

    def __str__(self) -> str:
        return (f"{self.rewritten} progress bar(s) rewritten from the saved widget state, "
                f"{self.dropped} closed one(s) dropped")


def _ref(value: str) -> str | None:
    m = _REF.fullmatch(value) if isinstance(value, str) else None
    return m.group(1) if m else None


def _tqdm_parts(state: dict, model_id: str):
    """(left HTML, progress, right HTML, box layout) models of the tqdm box ``model_id``, or None if it is none."""
    box = state.get(model_id)
    if box is None or box.get("model_name") != "HBoxModel":
        return None
    children = [state.get(_ref(c) or "") for c in box["state"].get("children", [])]
    names = [c.get("model_name") if c else None for c in children]
    if names not in (["HTMLModel", "FloatProgressModel", "HTMLModel"], ["HTMLModel", "IntProgressModel", "HTMLModel"]):
        return None
    layout = state.get(_ref(box["state"].get("layout", "")) or "")
    return (*children, layout)


def _plain(html_text: str) -> str:
    # tqdm writes its text into the HTML widgets escaped, with figure spaces (U+2007) for spaces
    return html.unescape(html_text or "").replace("\u2007", " ")


def bar_text(state: dict, model_id: str) -> str | None:
    """The text line of the tqdm bar whose box is ``model_id`` in a saved widget state, as the bar ended; None when
    ``model_id`` is not a tqdm bar there. ``state`` is ``metadata.widgets[WIDGET_STATE]["state"]``."""
    parts = _tqdm_parts(state, model_id)
    if parts is None:
        return None
    left, progress, right, _ = parts
    left_text, right_text = _plain(left["state"].get("value")), _plain(right["state"].get("value"))
    if not left_text:  # a bar without a total: tqdm put its whole line in the right-hand text
        return right_text
    from tqdm.auto import tqdm

    value, top = float(progress["state"].get("value") or 0), float(progress["state"].get("max") or 0)
    bar = tqdm.format_meter(min(max(value, 0.0), top), top, 0, bar_format="{bar}") if top > 0 else " " * 10
    return f"{left_text}|{bar}|{right_text}"


def _closed(state: dict, model_id: str) -> bool:
    """A bar tqdm closed (``leave=False``): ipywidgets 8 keeps its models and hides its box's layout."""
    layout = _tqdm_parts(state, model_id)[3]
    return bool(layout) and layout["state"].get("visibility") == "hidden"


def _reachable(state: dict, roots) -> set[str]:
    seen, todo = set(), [r for r in roots if r in state]
    while todo:
        model_id = todo.pop()
        if model_id in seen:
            continue
        seen.add(model_id)
        todo.extend(r for r in _REF.findall(json.dumps(state[model_id]["state"])) if r in state and r not in seen)
    return seen


def tidy_progress_bars(nb, name: str = "notebook") -> Tidied:
    """Rewrite, in place, the text fallback of every tqdm widget output of an executed notebook (nbformat node or
    dict) from the run's saved widget state, and drop the outputs of closed (``leave=False``) bars together with
    their models. Other widgets are left alone. Running it twice changes nothing the second time.

    A tqdm output whose widget is not in the saved state (a notebook executed with widget state off, or outputs and
    state from different runs) is a ValueError naming the fix, since its final state is nowhere to be read."""
    saved = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    done, dropped_ids = Tidied(), []
    for index, cell in enumerate(nb.get("cells", [])):
        kept = []
        for out in cell.get("outputs", []):
            shown = out.get("output_type") in ("display_data", "execute_result")
            view = out.get("data", {}).get(WIDGET_VIEW) if shown else None
            text = out["data"].get("text/plain", "") if view else ""
            text = "".join(text) if isinstance(text, list) else text
            if view is None:
                kept.append(out)
                continue
            model_id = view.get("model_id", "")
            if model_id not in saved:
                if _METER.search(text):
                    raise ValueError(
                        f"{name}, cell {index}: the progress bar {text.strip()!r} has no widget {model_id} in the "
                        "notebook's saved widget state (metadata.widgets), so its final state is unknown; re-execute "
                        "the notebook with the widget state stored (nbclient and nbconvert store it by default) and "
                        "keep metadata.widgets with the outputs when copying them")
                kept.append(out)
                continue
            if _tqdm_parts(saved, model_id) is None:
                kept.append(out)
            elif _closed(saved, model_id):
                dropped_ids.append(model_id)
                done.dropped += 1
            else:
                final = bar_text(saved, model_id)
                if final != text:
                    out["data"]["text/plain"] = final
                    done.rewritten += 1
                kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    if dropped_ids:
        gone = _reachable(saved, dropped_ids)
        still_used = _reachable(saved, [m for m in saved if m not in gone])
        for model_id in gone - still_used:
            del saved[model_id]
    return done


def tidy_file(path) -> Tidied:
    """:func:`tidy_progress_bars` on a notebook file, written back only when something changed."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    done = tidy_progress_bars(nb, path.name)
    if done.rewritten or done.dropped:
        _write(nb, path)
    return done


def _write(nb, path: Path) -> None:
    """Write the notebook as ``nbformat.write`` does (ending in a newline), atomically."""
    import nbformat

    from .checkpoint import atomic_write_bytes

    text = nbformat.writes(nb)
    atomic_write_bytes(path, (text if text.endswith("\n") else text + "\n").encode())


def find_notebooks(names, folder="notebooks") -> list[Path]:
    """Notebook files from command-line names: a path to an .ipynb file, a number such as ``07`` (the notebook
    ``NN_*.ipynb`` of ``folder``), or ``all`` (every ``NN_*.ipynb`` there, in order)."""
    folder = Path(folder)
    found = []
    for name in names:
        if name == "all" or re.fullmatch(r"\d{1,2}", name):
            pattern = "[0-9][0-9]_*.ipynb" if name == "all" else f"{int(name):02d}_*.ipynb"
            matches = sorted(folder.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"no notebook {pattern} in {folder.resolve()}; give --notebooks the folder of "
                                        "the course's notebooks, or the path of a notebook file")
            found.extend(matches)
        elif Path(name).suffix == ".ipynb" and Path(name).is_file():
            found.append(Path(name))
        else:
            raise FileNotFoundError(f"{name!r} is neither a notebook file nor a notebook number such as 07 (or all)")
    return found


def run_notebook(path, *, output_dir=None, timeout: float | None = None,
                 smoke: bool = False) -> tuple[Path, Tidied, float]:
    """Execute the notebook ``path`` as its committed outputs are made, tidy its progress bars and write it into
    ``output_dir`` (default: over ``path``; either only once every cell has run). Returns (written path, what the
    tidy step changed, seconds).

    The kernel runs in the notebook's folder with the caller's environment (``MINICFG_DATA``, ``PYTHONPATH``,
    ``OMP_NUM_THREADS``), ``MINICFG_SMOKE=0`` (``1`` with ``smoke=True``) and matplotlib's inline backend; the
    widget state is stored in the notebook. ``timeout`` limits each cell (seconds; default none). A failing cell is a
    RuntimeError naming it; the partly executed notebook is written beside the temporary files, ``path`` untouched.
    """
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    except ImportError as err:
        raise RuntimeError(f"running notebooks needs nbclient and nbformat ({err}); install the dev extra: "
                           'pip install -e ".[dev]"') from err

    path = Path(path)
    target = path if output_dir is None else Path(output_dir) / path.name
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, MINICFG_SMOKE="1" if smoke else "0")
    env.pop("MPLBACKEND", None)  # a backend such as Agg set for pytest would keep plt.show() from storing figures
    client = NotebookClient(nb, timeout=timeout, store_widget_state=True,
                            resources={"metadata": {"path": str(path.resolve().parent)}})
    start = time.monotonic()
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        failed = Path(tempfile.gettempdir()) / f"minicfg-failed-{path.name}"
        nbformat.write(nb, failed)
        where = next((f"cell {i}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
                      and any(o.output_type == "error" for o in c.get("outputs", []))), "a cell")
        what = f"{err.ename}: {err.evalue}" if isinstance(err, CellExecutionError) else type(err).__name__
        raise RuntimeError(f"{path.name}: {where} failed ({what}); the partly executed notebook is {failed}, and "
                           f"{target} is unchanged") from err
    seconds = time.monotonic() - start
    done = tidy_progress_bars(nb, path.name)
    _write(nb, target)
    return target, done, seconds
