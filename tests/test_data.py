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


# -- `minicfg download` against a local stand-in for the MNIST mirrors ----------------------------------------
def _idx(array: np.ndarray, labels: bool) -> bytes:
    """MNIST's IDX format: magic (0x801 labels, 0x803 images), the sizes as big-endian int32, then the bytes."""
    import gzip

    head = np.array([0x801 if labels else 0x803, *array.shape], dtype=">i4").tobytes()
    return gzip.compress(head + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_mirror(tmp_path, monkeypatch):
    """A local HTTP server holding small MNIST files (12 training and 5 test digits) in MNIST's own format, put in
    place of torchvision's mirror list; yields (the arrays it serves, the (method, path) of each request, its
    folder)."""
    import functools
    import http.server
    import threading

    from torchvision.datasets import MNIST

    rng = np.random.default_rng(0)
    served = {"train": (rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12)),
              "test": (rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5))}
    www = tmp_path / "www"
    www.mkdir()
    resources = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for name, array, labels in ((f"{prefix}-images-idx3-ubyte.gz", served[split][0], False),
                                    (f"{prefix}-labels-idx1-ubyte.gz", served[split][1], True)):
            blob = _idx(array, labels)
            (www / name).write_bytes(blob)
            resources.append((name, hashlib.md5(blob).hexdigest()))
    requested = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requested.append((self.command, self.path))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(MNIST, "resources", resources)
    yield served, requested, www
    server.shutdown()
    server.server_close()


def test_download_fetches_both_splits_and_not_again(mnist_mirror, tmp_path, capsys):
    from minicfg import cli

    served, requested, _ = mnist_mirror
    root = tmp_path / "data"
    assert cli.main(["download", "--dataset", "mnist", "--root", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [f"mnist train: 12 images under {root.resolve()}",
                                                          f"mnist test: 5 images under {root.resolve()}"]
    # each file fetched (torchvision asks twice: once to follow redirects, once for the bytes)
    assert {path for _, path in requested} == {f"/{p.name}" for p in mnist_mirror[2].iterdir()}
    for split, (pixels, labels) in served.items():  # the served bytes, in [-1, 1]
        images, got = data.mnist(train=split == "train", download=False, root=root).tensors
        torch.testing.assert_close(images, torch.from_numpy(pixels).float()[:, None] / 127.5 - 1)
        assert got.tolist() == labels.tolist()
    n = len(requested)
    assert data.download(["mnist"], root=root)[0] == f"mnist train: 12 images under {root.resolve()}"
    assert len(requested) == n  # present: nothing fetched again


def test_a_corrupted_download_is_refused_with_the_reason(mnist_mirror, tmp_path, capsys):
    from minicfg import cli

    _, _, www = mnist_mirror
    path = www / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")  # not what the MD5 list says
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["download", "--dataset", "mnist", "--root", str(tmp_path / "data")])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and "minicfg download: error: mnist not found under" in err
    assert "the download failed:" in err and "train-labels-idx1-ubyte.gz" in err and "corrupted" in err
    assert "minicfg download --dataset mnist" in err  # the fix is named
