"""CIFAR-10 is accepted by torchvision's file MD5s or, for a re-pickled copy, by the SHA-256 of its decoded arrays;
anything else is refused with an error that names the array that differs."""

import hashlib
import os
import pickle

import numpy as np
import pytest

from minicfg import data

NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _write_fake_cifar(root, n_per_batch=4, seed=0):
    """A tiny folder in the official layout (6 pickled batches of random pixels); returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    arrays = {}
    for name in NAMES:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
                 b"filenames": [f"img{i}.png".encode() for i in range(n_per_batch)], b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(batch))
        arrays[name] = batch
    return folder, arrays


def _content_hashes(arrays):
    out = {}
    for split, names in (("train", NAMES[:5]), ("test", NAMES[5:])):
        pixels = np.concatenate([arrays[n][b"data"] for n in names])
        labels = np.concatenate([np.asarray(arrays[n][b"labels"], dtype=np.uint8) for n in names])
        out[split] = {"data": hashlib.sha256(pixels.tobytes()).hexdigest(),
                      "labels": hashlib.sha256(labels.tobytes()).hexdigest()}
    return out


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake CIFAR-10 folder, a fresh verification cache, and (by default) no table that accepts it."""
    folder, arrays = _write_fake_cifar(tmp_path)
    monkeypatch.setattr(data, "_CIFAR_VERIFIED", {})
    monkeypatch.setattr(data, "CIFAR10_CONTENT_SHA256", {s: {"data": "0" * 64, "labels": "0" * 64}
                                                         for s in ("train", "test")})
    return tmp_path, folder, arrays


def test_official_files_are_accepted_by_their_md5s(fake, monkeypatch):
    root, folder, arrays = fake  # content hashes wrong, so only the MD5 path can accept
    md5s = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in NAMES}
    monkeypatch.setattr(data, "_official_cifar10_md5s", lambda: md5s)
    images, labels = data.cifar10(train=True, root=root, download=False).tensors
    assert images.shape == (20, 3, 32, 32) and labels.tolist() == sum((arrays[n][b"labels"] for n in NAMES[:5]), [])
    expected = np.concatenate([arrays[n][b"data"] for n in NAMES[:5]]).reshape(-1, 3, 32, 32)
    assert np.array_equal(((images + 1) * 127.5).round().numpy().astype(np.uint8), expected)
    assert data.cifar10_verification(train=True, root=root) == "file MD5s"


def test_repickled_copy_is_accepted_by_its_content(fake, monkeypatch):
    root, folder, arrays = fake  # torchvision's real MD5 list: these files do not match it
    monkeypatch.setattr(data, "CIFAR10_CONTENT_SHA256", _content_hashes(arrays))
    assert len(data.cifar10(train=False, root=root, download=False)) == 4
    assert data.cifar10_verification(train=False, root=root) == "content SHA-256"


def test_verification_is_done_once_per_process(fake, monkeypatch):
    root, folder, arrays = fake
    monkeypatch.setattr(data, "CIFAR10_CONTENT_SHA256", _content_hashes(arrays))
    calls = []
    verify = data._verify_cifar10
    monkeypatch.setattr(data, "_verify_cifar10", lambda *a: calls.append(1) or verify(*a))
    for _ in range(3):
        data.cifar10(train=False, root=root, download=False)
    assert len(calls) == 1
    os.utime(folder / "test_batch", ns=(1, 1))  # a changed file is verified again
    data.cifar10(train=False, root=root, download=False)
    assert len(calls) == 2


@pytest.mark.parametrize("what", ["data", "labels"])
def test_a_tampered_copy_is_refused_naming_the_array(fake, monkeypatch, what):
    root, folder, arrays = fake
    good = _content_hashes(arrays)
    monkeypatch.setattr(data, "CIFAR10_CONTENT_SHA256", good)
    batch = arrays["data_batch_3"]
    if what == "data":
        batch[b"data"][1, 100] ^= 1  # one pixel
    else:
        batch[b"labels"][2] = (batch[b"labels"][2] + 1) % 10
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch))
    monkeypatch.setenv("MINICFG_SMOKE", "1")  # present but corrupt: no fallback to a subset or a download
    with pytest.raises(data.DataCorruptedError) as err:
        data.load("cifar10", train=True, root=root)
    message = str(err.value)
    assert f"train {what}" in message and good["train"][what] in message and "minicfg download" in message
    other = "labels" if what == "data" else "data"
    assert f"train {other}" not in message  # only the array that differs is named
    assert not data.available("cifar10", train=True, root=root)


def test_the_mirror_is_the_official_content():
    """The data folder's CIFAR-10 (CI: the offline mirror, whose files were re-pickled) decodes to the official
    arrays; skipped where the data folder holds no CIFAR-10."""
    if not (data.data_root() / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip("no CIFAR-10 under MINICFG_DATA (`minicfg download --dataset cifar10`)")
    images, labels = data.cifar10(train=False, download=False).tensors
    assert images.shape == (10000, 3, 32, 32) and np.bincount(labels.numpy()).tolist() == [1000] * 10
    assert data.cifar10_verification(train=False) in ("file MD5s", "content SHA-256")
