"""``minicfg notebooks``: a notebook executed headless stores its tqdm bars at 0%; the tidy step writes each bar as it
ended and drops the bars tqdm closed; ``run`` executes a notebook as the committed outputs are made.

Each test executes a tiny notebook in a real kernel (a few seconds each), as the lead's merge step does:
``jupyter nbconvert --to notebook --execute``, then ``minicfg notebooks tidy``.
"""

import subprocess
import sys
import textwrap

import nbformat
import pytest
from test_notebook_outputs import stuck_bars

from minicfg import cli
from minicfg.notebook_run import WIDGET_STATE, WIDGET_VIEW, find_notebooks, tidy_file, tidy_progress_bars

BARS = [
    # a bar left on screen (leave=True, the default): it ends at 100%, the last line tqdm drew
    "import time\nfrom tqdm.auto import tqdm\n\nfor i in tqdm(range(5), desc='kept'):\n    time.sleep(0.01)",
    # a bar tqdm closes when done (leave=False): in JupyterLab it vanishes; the print below it stays
    "for i in tqdm(range(3), desc='gone', leave=False):\n    pass\nprint('after the closed bar')",
    # a bar still open at 4 of 10, its postfix drawn
    "bar = tqdm(total=10, desc='half')\nbar.update(4)\nbar.set_postfix(loss=0.5)",
    # a loop left early: the bar stays at 3 of 10
    "for i in tqdm(range(10), desc='broken'):\n    if i == 3:\n        break",
    # a widget that is no progress bar
    "import ipywidgets\nipywidgets.IntSlider(value=3, description='n')",
]


def _write_notebook(path, sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(s)) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The bars' notebook as ``jupyter nbconvert --to notebook --execute --output-dir`` stores it."""
    folder = tmp_path_factory.mktemp("bars")
    source = _write_notebook(folder / "bars.ipynb", BARS)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                    "--output-dir", str(folder / "out"), str(source)], check=True, capture_output=True, timeout=120)
    return folder / "out" / "bars.ipynb"


def _shown(cell) -> list[str]:
    """What each output of a cell shows as text."""
    return ["".join(o["text"]) if "text" in o else "".join(o["data"]["text/plain"]) for o in cell.outputs]


def test_a_headless_run_stores_its_bars_at_zero_percent(executed):
    """The problem itself: without the tidy step every bar's stored text is its first line, whatever it reached."""
    nb = nbformat.read(executed, as_version=4)
    assert [i for i, _ in stuck_bars(nb)] == [0, 1, 2, 3]
    assert _shown(nb.cells[0]) == ["kept:   0%|          | 0/5 [00:00<?, ?it/s]"]


def test_tidy_writes_each_bar_as_it_ended_and_drops_the_closed_one(executed, tmp_path):
    path = tmp_path / "bars.ipynb"
    path.write_bytes(executed.read_bytes())
    before = nbformat.read(path, as_version=4)
    closed_box = before.cells[1].outputs[0].data[WIDGET_VIEW]["model_id"]
    done = tidy_file(path)
    nb = nbformat.read(path, as_version=4)
    assert (done.rewritten, done.dropped) == (3, 1)
    assert stuck_bars(nb) == []
    # tqdm's text meter, written out by hand: description, percentage, a 10-cell bar of eighths, count, times
    (kept,) = _shown(nb.cells[0])
    assert kept.startswith("kept: 100%|██████████| 5/5 [00:") and kept.endswith("it/s]"), kept
    assert _shown(nb.cells[1]) == ["after the closed bar\n"]
    (half,) = _shown(nb.cells[2])
    assert half.startswith("half:  40%|████      | 4/10 [00:") and half.endswith(", loss=0.5]"), half
    (broken,) = _shown(nb.cells[3])
    assert broken.startswith("broken:  30%|███       | 3/10 [00:"), broken
    assert _shown(nb.cells[4]) == _shown(before.cells[4]) and "IntSlider" in _shown(nb.cells[4])[0]
    # the closed bar's models left the saved state; the others' stay, so the widgets still render in JupyterLab
    state = nb.metadata.widgets[WIDGET_STATE]["state"]
    assert closed_box in before.metadata.widgets[WIDGET_STATE]["state"] and closed_box not in state
    for cell in (nb.cells[0], nb.cells[2], nb.cells[3], nb.cells[4]):
        assert cell.outputs[0].data[WIDGET_VIEW]["model_id"] in state
    text = path.read_bytes()
    assert (tidy_file(path).rewritten, tidy_file(path).dropped) == (0, 0) and path.read_bytes() == text


def test_the_command_tidies_a_notebook_executed_elsewhere(executed, tmp_path, capsys):
    path = tmp_path / "bars.ipynb"
    path.write_bytes(executed.read_bytes())
    assert cli.main(["notebooks", "tidy", str(path)]) == 0
    assert "3 progress bar(s) rewritten" in capsys.readouterr().out
    assert stuck_bars(nbformat.read(path, as_version=4)) == []


def test_a_bar_without_its_saved_state_is_an_error_naming_the_fix(executed):
    nb = nbformat.read(executed, as_version=4)
    del nb.metadata["widgets"]
    with pytest.raises(ValueError, match=r"cell 0: the progress bar 'kept:   0%.*metadata\.widgets.*store"):
        tidy_progress_bars(nb, "bars.ipynb")


def test_run_executes_in_full_in_the_notebooks_folder_and_tidies(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "data.txt").write_text("read from the notebook's folder")
    source = _write_notebook(folder / "03_tiny.ipynb", [
        "import os\nprint(open('data.txt').read())\nprint('MINICFG_SMOKE =', os.environ.get('MINICFG_SMOKE'))",
        "from tqdm.auto import tqdm\nfor i in tqdm(range(4), desc='loop'):\n    pass",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.show()",
    ])
    original = source.read_bytes()
    monkeypatch.setenv("MINICFG_SMOKE", "1")      # as under pytest: the run must still be the full one
    monkeypatch.setenv("MPLBACKEND", "Agg")       # as under pytest: the figure must still be stored
    monkeypatch.chdir(tmp_path)
    assert cli.main(["notebooks", "run", "3", "--output-dir", str(tmp_path / "out")]) == 0
    assert source.read_bytes() == original
    nb = nbformat.read(tmp_path / "out" / "03_tiny.ipynb", as_version=4)
    assert _shown(nb.cells[0]) == ["read from the notebook's folder\nMINICFG_SMOKE = 0\n"]
    (bar,) = _shown(nb.cells[1])
    assert bar.startswith("loop: 100%|██████████| 4/4 ["), bar
    assert any("image/png" in o.get("data", {}) for o in nb.cells[2].outputs)
    assert "1 progress bar(s) rewritten" in capsys.readouterr().out


def test_a_failing_cell_leaves_the_notebook_unchanged_and_is_named(tmp_path, capsys):
    source = _write_notebook(tmp_path / "01_broken.ipynb", ["x = 1", "raise ValueError('a planted error')", "y = 2"])
    original = source.read_bytes()
    with pytest.raises(SystemExit) as stop:
        cli.main(["notebooks", "run", str(source)])
    assert stop.value.code == 2
    assert "01_broken.ipynb: cell 1 failed (ValueError: a planted error)" in capsys.readouterr().err
    assert source.read_bytes() == original


def test_notebook_names(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "notebooks"
    assert [p.name for p in find_notebooks(["7"], root)] == ["07_fid_is_tradeoff.ipynb"]
    assert [p.name[:2] for p in find_notebooks(["all"], root)] == [f"{k:02d}" for k in range(1, 11)]
    with pytest.raises(FileNotFoundError, match="no notebook 12_"):
        find_notebooks(["12"], root)
    with pytest.raises(FileNotFoundError, match="neither a notebook file nor a notebook number"):
        find_notebooks(["cifar"], root)
