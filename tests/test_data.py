"""Data loading on a fresh machine: download when online, the shipped subset in smoke mode, a clear error otherwise."""

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from minicfg import data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def empty_data(tmp_path, monkeypatch):
    """A data folder with nothing in it, downloads allowed unless a test says otherwise."""
    monkeypatch.setenv("MINICFG_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("MINICFG_OFFLINE", raising=False)
    return tmp_path / "data"


SUBSETS = {"mnist": ((1, 28, 28), 2000, 1000), "cifar10": ((3, 32, 32), 500, 500)}  # shape, train, test images


@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_smoke_mode_falls_back_to_the_shipped_subset_and_says_so(name, empty_data, monkeypatch, capsys):
    monkeypatch.setenv("MINICFG_SMOKE", "1")
    monkeypatch.setattr(data, "_ANNOUNCED", set())
    train = data.load(name, train=True)
    test = data.load(name, train=False, download=False)
    data.load(name, train=False)  # announced once per split and process
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("smoke mode uses" in line and str(empty_data) in line for line in lines)
    shape, n_train, n_test = SUBSETS[name]
    for ds, n in ((train, n_train), (test, n_test)):
        images, labels = ds.tensors
        assert images.shape == (n, *shape) and images.dtype == torch.float32 and labels.dtype == torch.int64
        assert float(images.min()) == -1.0 and float(images.max()) == 1.0
        assert torch.bincount(labels).tolist() == [n // 10] * 10


@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_the_subset_is_drawn_from_the_real_data_set(name):
    """Every shipped image is an image of the official set with its label (needs the full set: CI's mirror)."""
    if not data.available(name, train=False):
        pytest.skip(f"the full {name} set is not in the data folder (`minicfg download --dataset {name}`)")
    with np.load(data.SUBSET_DIR / f"{name}.npz", allow_pickle=False) as f:
        subset = {split: (f[f"{split}_images"], f[f"{split}_labels"]) for split in ("train", "test")}
    for split, (images, labels) in subset.items():
        full_x, full_y = data.load(name, train=split == "train").tensors
        full_u8 = ((full_x + 1) * 127.5).round().to(torch.uint8).numpy()
        index = {hashlib.sha1(img.tobytes()).hexdigest(): int(y) for img, y in zip(full_u8, full_y, strict=True)}
        for img, y in zip(images, labels, strict=True):
            assert index.get(hashlib.sha1(img.tobytes()).hexdigest()) == int(y)


@pytest.mark.parametrize("how", ["download=False", "MINICFG_OFFLINE=1"])
def test_full_mode_without_data_or_downloads_gets_the_clear_error(empty_data, monkeypatch, how):
    monkeypatch.setenv("MINICFG_SMOKE", "0")
    kwargs = {}
    if how == "download=False":
        kwargs["download"] = False
    else:
        monkeypatch.setenv("MINICFG_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        data.mnist(train=False, **kwargs)
    message = str(err.value)
    assert str(empty_data) in message and "minicfg download --dataset mnist" in message and "MINICFG_DATA" in message
    assert ("MINICFG_OFFLINE" in message) == (how == "MINICFG_OFFLINE=1")


def _fake_reader(calls, fail_download=False):
    def reader(root, train, download):
        calls.append(download)
        if not download or fail_download:
            raise RuntimeError("Dataset not found." if not download else "<urlopen error no network>")
        return TensorDataset(torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.int64))

    return reader


def test_online_the_first_call_downloads(empty_data, monkeypatch):
    monkeypatch.setenv("MINICFG_SMOKE", "0")
    calls = []
    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(data.get_dataset("mnist"),
                                                                     reader=_fake_reader(calls)))
    assert len(data.mnist(train=True)) == 3
    assert calls == [False, True]  # looked in the folder first, then downloaded


def test_a_failed_download_says_why(empty_data, monkeypatch):
    monkeypatch.setenv("MINICFG_SMOKE", "0")
    calls = []
    monkeypatch.setitem(data.DATASETS, "mnist", dataclasses.replace(data.get_dataset("mnist"),
                                                                     reader=_fake_reader(calls, fail_download=True)))
    with pytest.raises(FileNotFoundError, match="the download failed: <urlopen error no network>"):
        data.mnist(train=True)


def test_notebook_01_runs_in_smoke_mode_with_an_empty_data_folder(tmp_path):
    """The newcomer's case: no data, no network, `pytest` (smoke mode) still runs the first notebook."""
    nbformat = pytest.importorskip("nbformat")
    env = {**os.environ, "MINICFG_DATA": str(tmp_path / "empty"), "MINICFG_OFFLINE": "1", "MINICFG_SMOKE": "1",
           "MPLBACKEND": "Agg"}
    out = tmp_path / "01.ipynb"
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--output", str(out),
           "--ExecutePreprocessor.timeout=300", str(ROOT / "notebooks" / "01_forward_process_and_log_snr.ipynb")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT / "notebooks")
    assert result.returncode == 0, result.stderr[-3000:]
    text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []))
    assert "smoke mode uses the 1,000 test images shipped" in text
