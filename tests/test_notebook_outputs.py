"""What the committed notebooks show a reader besides their prose (issue 28): no progress bar stuck at 0%, every
exercise check stored as passing, the smoke-mode note as its own paragraph, and one name for w = 0.

The notebooks are committed with the outputs of a full run; these tests read those stored outputs, they execute
nothing. A run executed headless stores each tqdm bar's first line ("0%|") unless its progress bars are tidied
(``minicfg notebooks run`` does it, ``minicfg notebooks tidy`` does it for a notebook executed otherwise).
"""

import json
import re
from pathlib import Path

import pytest
from prose_scan import output_texts as shown_texts

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: tqdm's meter at 0%: "train:   0%|          | 0/300" (not the end of "100%|")
STUCK = re.compile(r"(?<![\d.])0\s?%\|")
CHECK_CALL = re.compile(r"\bchecks\.check_(\w+)\(")
#: the course calls w = 0 "conditional, no guidance" and w = -1 "unconditional"
UNGUIDED = re.compile(r"\bun-?guided\b", re.IGNORECASE)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_texts(cell) -> list[str]:
    """Every text a reader sees in a cell's outputs: streams, results and displays (each text type), errors."""
    return shown_texts(cell) + [f"{out.get('ename')}: {out.get('evalue')}" for out in cell.get("outputs", [])
                                if out.get("output_type") == "error"]


def stuck_bars(nb: dict) -> list[tuple[int, str]]:
    """(cell index, line) for every progress bar shown at 0% in an output. A line redrawn with carriage returns
    shows its last segment, as Jupyter and a terminal draw it."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        for text in output_texts(cell):
            for line in text.split("\n"):
                shown = line.split("\r")[-1]
                if STUCK.search(shown):
                    found.append((i, shown.strip()))
    return found


def check_cells(nb: dict) -> list[tuple[int, str]]:
    """(cell index, exercise) for every code cell that calls an exercise check ``checks.check_<exercise>(...)``."""
    return [(i, m.group(1)) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            for m in CHECK_CALL.finditer(_text(c["source"]))]


def unstored_checks(nb: dict) -> list[str]:
    """Exercise check cells whose stored output does not say the check passed."""
    problems = []
    for i, exercise in check_cells(nb):
        cell = nb["cells"][i]
        stdout = "".join(_text(o["text"]) for o in cell.get("outputs", [])
                         if o.get("output_type") == "stream" and o.get("name") == "stdout")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors or not re.search(rf"^{re.escape(exercise)}: all [1-9]\d* inputs pass$", stdout, re.MULTILINE):
            problems.append(f"cell {i} (checks.check_{exercise}) stores {stdout.strip()!r}"
                            + (f" and the error {errors[0].get('ename')}" if errors else ""))
    return problems


def smoke_paragraph_problem(nb: dict) -> str | None:
    """Why the first cell's "**Smoke mode.**" note is not its own Markdown paragraph (None when it is)."""
    first = nb["cells"][0]
    source = _text(first["source"])
    if first["cell_type"] != "markdown" or "**Smoke mode.**" not in source:
        return "the first cell is not a markdown cell with a **Smoke mode.** paragraph"
    # Markdown starts a paragraph only after a blank line: without one the note is glued to the sentence before it
    if not re.search(r"(?:\A|\n[ \t]*\n)\*\*Smoke mode\.\*\*", source):
        before = source[:source.index("**Smoke mode.**")].rstrip().splitlines()[-1]
        return f"no blank line before it; it continues the paragraph ending {before[-70:]!r}"
    return None


def unguided_mentions(nb: dict, in_code: bool = False) -> list[tuple[int, str]]:
    """(cell index, context) for each "unguided" in markdown cells and outputs, or (``in_code``) in code cells."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if in_code:
            texts = [_text(cell["source"])] if cell["cell_type"] == "code" else []
        else:
            texts = ([_text(cell["source"])] if cell["cell_type"] == "markdown" else []) + output_texts(cell)
        for text in texts:
            found.extend((i, text[max(0, m.start() - 50):m.end() + 30].replace("\n", " "))
                         for m in UNGUIDED.finditer(text))
    return found


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


#: notebooks that hold no exercise: 10 surveys later guidance methods, measured, with nothing to implement
WITHOUT_EXERCISES = {"10"}


def test_every_notebook_is_checked():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{k:02d}" for k in range(1, 11)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_no_progress_bar_is_stored_at_zero_percent(path):
    stuck = stuck_bars(_load(path))
    assert not stuck, (f"{path.name} stores progress bars at 0% (a headless run's first line of each tqdm bar); "
                       f"run `minicfg notebooks tidy {path.as_posix()}`:\n" +
                       "\n".join(f"  cell {i}: {line!r}" for i, line in stuck))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_exercise_checks_are_stored_as_passing(path):
    nb = _load(path)
    if path.name[:2] in WITHOUT_EXERCISES:
        assert not check_cells(nb), f"{path.name} has exercise checks now: take it out of WITHOUT_EXERCISES"
        return
    assert check_cells(nb), (f"{path.name} has no exercise check cell (checks.check_...), yet every notebook outside "
                             f"WITHOUT_EXERCISES ({sorted(WITHOUT_EXERCISES)}) has one")
    problems = unstored_checks(nb)
    assert not problems, (f"{path.name}: exercise check cells whose stored output does not say they pass (execute "
                          "the notebook and keep the outputs):\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_smoke_mode_note_is_its_own_paragraph(path):
    problem = smoke_paragraph_problem(_load(path))
    assert problem is None, f"{path.name}, first cell, **Smoke mode.**: {problem}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_w0_is_never_called_unguided_in_prose_or_outputs(path):
    hits = unguided_mentions(_load(path))
    assert not hits, (f"{path.name} calls something 'unguided'; w = 0 is \"conditional, no guidance\" and w = -1 "
                      "\"unconditional\":\n" + "\n".join(f"  cell {i}: ...{ctx}..." for i, ctx in hits))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_w0_is_never_called_unguided_in_code(path):
    """Code cells too: their strings become figure titles and panel labels, which no text test can read."""
    hits = unguided_mentions(_load(path), in_code=True)
    assert not hits, (f"{path.name}: code cells say 'unguided' (figure labels, titles, messages); w = 0 is "
                      "\"conditional, no guidance\":\n" + "\n".join(f"  cell {i}: ...{ctx}..." for i, ctx in hits))


# -- the rules on small notebooks written by hand ----------------------------------------------------------------
def _nb(*cells) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(source: str, *outputs) -> dict:
    return {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": source, "outputs": list(outputs)}


def _stream(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def _display(text: str) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": {"text/plain": text}}


@pytest.mark.parametrize("output, stuck", [
    (_display("train:   0%|          | 0/300 [00:00<?, ?it/s]"), True),       # a headless run's widget fallback
    (_display("train: 100%|██████████| 300/300 [03:49<00:00,  1.32it/s]"), False),
    (_display("zero-shot K=16:  10%|█         | 20/200 [00:03<00:30,  6.06image/s]"), False),
    (_stream("  0%|          | 0/5 [00:00<?, ?it/s]\r100%|██████████| 5/5 [00:01<00:00]\n", "stderr"), False),
    (_stream("100%|██████████| 5/5\n  0%|          | 0/5 [00:00<?, ?it/s]\n", "stderr"), True),
    (_stream("accuracy rose by 0% | 5 of 5 classes\n"), False),                 # not a bar
])
def test_stuck_bar_rule(output, stuck):
    assert bool(stuck_bars(_nb(_code("f()", output)))) is stuck


def test_a_planted_zero_percent_bar_in_a_committed_notebook_is_found():
    path = next(p for p in NOTEBOOKS if p.name.startswith("08_"))
    nb = _load(path)
    index = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c["outputs"])
    nb["cells"][index]["outputs"].append(_display("ancestral:   0%|          | 0/100 [00:00<?, ?it/s]"))
    assert (index, "ancestral:   0%|          | 0/100 [00:00<?, ?it/s]") in stuck_bars(nb)


@pytest.mark.parametrize("outputs, passes", [
    ([_stream("alpha_sigma: all 3 inputs pass\n")], True),
    ([], False),                                                               # never executed
    ([_stream("q_sample: all 3 inputs pass\n")], False),                       # another exercise's line
    ([_stream("alpha_sigma: all 0 inputs pass\n")], False),
    ([_stream("alpha_sigma: all 3 inputs pass\n"),
      {"output_type": "error", "ename": "AssertionError", "evalue": "x", "traceback": []}], False),
])
def test_stored_check_rule(outputs, passes):
    nb = _nb(_code("from minicfg import checks\n\nchecks.check_alpha_sigma(alpha_sigma)", *outputs))
    assert check_cells(nb) == [(0, "alpha_sigma")]
    assert (unstored_checks(nb) == []) is passes


@pytest.mark.parametrize("first_cell, alone", [
    ("# 01 Title\n\nWhat it teaches.\n\n**Smoke mode.** `pytest` shrinks the loops.", True),
    ("# 01 Title\n\nWhat it teaches.\n  \n**Smoke mode.** `pytest` shrinks the loops.", True),
    ("# 01 Title\n\nWhat it teaches.\n**Smoke mode.** `pytest` shrinks the loops.", False),  # renders inline
    ("# 01 Title\n\nWhat it teaches.", False),
])
def test_smoke_paragraph_rule(first_cell, alone):
    assert (smoke_paragraph_problem(_nb(_md(first_cell))) is None) is alone


def test_unguided_rule():
    nb = _nb(_md("At $w = 0$ (conditional, no guidance) the digits are faint."),
             _code('plt.title("unguided")', _stream("Unguided samples: 94%\n")),
             _md("The un-guided row"), _md("guidance-free training; guided samples"))
    assert [i for i, _ in unguided_mentions(nb)] == [1, 2]
    assert [i for i, _ in unguided_mentions(nb, in_code=True)] == [1]
