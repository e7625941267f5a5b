"""A planted false claim stops a notebook (issue 28): notebook 08's sentence on the recorded CIFAR-10 sweep, run
from the committed notebook's own code on the recorded CSV (it holds) and on a copy with one value changed (a
ClaimError names the claim). The cells only read files, so this is what nbval runs in smoke mode too."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from minicfg.notebook import ClaimError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "08_cifar10.ipynb"


def _code_cells() -> list[str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _run_claim_cell(root: Path, monkeypatch) -> dict:
    """The notebook's first cell (imports, setup(), without IPython magics) and its recorded-sweep cell, with
    ``root/docs/sweeps`` as the sweeps the notebook finds."""
    cells = _code_cells()
    claim = next(src for src in cells if 'SWEEPS / "cifar10" / "sweep.csv"' in src)
    monkeypatch.chdir(root)
    namespace: dict = {}
    for src in (cells[0], claim):
        plain = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith("%"))
        exec(compile(plain, str(NOTEBOOK), "exec"), namespace)
    return namespace


def _sweeps_copy(tmp_path: Path, plant=None) -> Path:
    shutil.copytree(ROOT / "docs" / "sweeps" / "cifar10", tmp_path / "docs" / "sweeps" / "cifar10")
    if plant is not None:
        path = tmp_path / "docs" / "sweeps" / "cifar10" / "sweep.csv"
        with path.open() as f:
            rows = list(csv.DictReader(f))
        w, key, value = plant
        hit = [r for r in rows if float(r["w"]) == w and int(r["seed"]) == 1]
        assert len(hit) == 1, "the planted row must exist once"
        hit[0][key] = str(value)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return tmp_path


def test_claims_hold_on_the_recorded_sweep(tmp_path, monkeypatch, capsys):
    ns = _run_claim_cell(_sweeps_copy(tmp_path), monkeypatch)
    assert "Accuracy rises at every step" in capsys.readouterr().out
    assert ns["best_fid"]["w"] == min(ns["rows"], key=lambda r: r["fid"])["w"]


@pytest.mark.parametrize("plant, claim", [
    ((1.0, "accuracy", 0.99), "accuracy_rises"),        # above its neighbour at w = 1.5
    ((4.0, "recall", 0.30), "recall_falls_after_03"),   # recall climbs again at w = 4
    ((1.0, "fid", 10.0), "one_minimum"),                # a second minimum, before w = 2
])
def test_a_planted_false_value_stops_the_sentence(tmp_path, monkeypatch, plant, claim):
    with pytest.raises(ClaimError, match=claim):
        _run_claim_cell(_sweeps_copy(tmp_path, plant), monkeypatch)
