"""The notebooks' prose cannot drift from their outputs (issue 28).

A measured-looking number typed into a markdown cell (a decimal, a percentage, an "N x" ratio) must be one the
notebook's code or outputs hold, or sit in a sentence that names its source (an author-year citation, a paper's
table or figure, a file under docs/); measured numbers are written by the cell that measures them
(``minicfg.notebook.say``), whose claims are asserted.
"""

import json
from pathlib import Path

import pytest
from prose_scan import typed_numbers

from minicfg import notebook
from minicfg.notebook import ClaimError, say

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_no_typed_measured_numbers(path):
    hits = typed_numbers(path)
    assert not hits, (f"{path.name}: measured-looking numbers typed into markdown that no output holds; write them "
                      "from the run with minicfg.notebook.say, or name the source in the sentence:\n" +
                      "\n".join(f"  cell {i}: {num!r} in {sentence[:140]!r}" for i, num, sentence in hits))


def _notebook(tmp_path, markdown: str, output: str) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [markdown]},
             {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["print(acc)"],
              "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]}]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_scan_flags_a_planted_number_in_a_committed_notebook(tmp_path):
    """A copy of notebook 07 with one false number planted in a markdown cell fails; the original's cell does not."""
    source = next(p for p in NOTEBOOKS if p.name.startswith("07_"))
    nb = json.loads(source.read_text())
    first_md = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown")
    nb["cells"][first_md]["source"].append("\n\nThe shipped model recognises 93.17% of its samples at $w=0$.")
    planted = tmp_path / source.name
    planted.write_text(json.dumps(nb))
    hits = typed_numbers(planted)
    assert [(i, num) for i, num, _ in hits if i == first_md] == [(first_md, "93.17%")]


@pytest.mark.parametrize("markdown, flagged", [
    ("Accuracy is 0.941 here.", []),                          # the output holds it
    ("Accuracy is 0.952 here.", ["0.952"]),                   # typed, in no output
    ("It recognises 95% of them.", ["95%"]),
    ("A step costs 1.89× a plain one.", ["1.89×"]),
    ("A step costs 2x a plain one.", ["2x"]),
    (r"There $\sigma_\lambda\le0.007$ and $\alpha\approx0.952$.", ["0.007", "0.952"]),   # glued to LaTeX
    ("Images of 64x64 pixels, 1,000 steps, Eq. 4.1, Sec. 3.2.", []),   # sizes, integers, references
    ("The paper reaches FID 1.55 (Ho & Salimans 2022, Table 1).", []),  # quoted with its source
    ("Its test accuracy is 99.59% (docs/metrics.md).", []),
    ("See [the paper](https://arxiv.org/abs/2207.12598).", []),
])
def test_scan_rules(tmp_path, markdown, flagged):
    hits = typed_numbers(_notebook(tmp_path, markdown, "accuracy 0.941\n"))
    assert [num for _, num, _ in hits] == flagged


def test_say_shows_true_sentences_and_refuses_false_claims(capsys, monkeypatch):
    monkeypatch.delenv("MINICFG_SMOKE", raising=False)
    say("accuracy rises from 0.94 to 0.97", rises=0.97 > 0.94)
    assert capsys.readouterr().out.strip() == "accuracy rises from 0.94 to 0.97"
    with pytest.raises(ClaimError, match="rises.*accuracy rises from 0.97 to 0.94"):
        say("accuracy rises from 0.97 to 0.94", rises=0.94 > 0.97)
    assert capsys.readouterr().out == ""
    with pytest.raises(ClaimError, match="rises"):   # exempt only in smoke mode
        say("accuracy rises", full_run_only=["rises"], rises=False)


def test_say_smoke_mode_marks_exempt_claims_instead_of_stating_them(capsys, monkeypatch):
    monkeypatch.setenv("MINICFG_SMOKE", "1")
    say("accuracy rises", full_run_only=["rises"], rises=False)
    out = capsys.readouterr().out
    assert out.startswith("*Smoke mode:") and "rises" in out and out.rstrip().endswith("accuracy rises")
    with pytest.raises(ClaimError):                   # claims not named in full_run_only hold in smoke mode too
        say("best at w = 0.1", full_run_only=["rises"], rises=True, best=False)


def test_say_rejects_what_is_not_a_truth_value():
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    say("fine", a=np.bool_(True), b=torch.tensor(True), c=torch.tensor([[1.0]]) > 0)
    with pytest.raises(TypeError, match="not a truth value.*comparison"):
        say("a list is not a claim", rises=[False])
    with pytest.raises(TypeError, match="not a truth value"):
        say("nor a tensor of many", rises=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="full_run_only names"):
        say("typo", full_run_only=["rsies"], rises=True)


def test_setup_finds_the_sweeps_or_names_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(Path(__file__).resolve().parents[1] / "notebooks")
    sweeps = notebook.setup()
    assert sweeps == Path(__file__).resolve().parents[1] / "docs" / "sweeps" and (sweeps / "shipped").is_dir()
    assert "smoke mode:" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="checkout"):
        notebook.setup()
