"""The data sets, one record each in a registry: MNIST and CIFAR-10 as tensors in [-1, 1].

Each :class:`Dataset` record holds what the rest of minicfg needs to know about a data set (image shape,
number of classes, the reader of its files, the shipped weights that go with it, the training preset),
so adding a data set is one :func:`register_dataset` call. Data are read from the folder
``MINICFG_DATA`` (default ``~/.cache/minicfg``) in torchvision's layout:

- present there: read as they are;
- absent, online: downloaded once through torchvision, with its progress bar (``download=False`` or
  ``MINICFG_OFFLINE=1`` turns this off);
- absent, in smoke mode (``MINICFG_SMOKE=1``, set by pytest): a small fixed subset shipped inside the
  package is used instead, and one printed line says so, so the tests and the notebooks' smoke runs work
  offline on a fresh machine;
- otherwise: a FileNotFoundError that names the folder searched and the two ways to fix it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .registry import Registry
from .smoke import is_smoke

__all__ = [
    "Dataset",
    "DATASETS",
    "DEFAULT_DATASET",
    "register_dataset",
    "get_dataset",
    "data_root",
    "offline",
    "load",
    "available",
    "mnist",
    "cifar10",
    "cifar10_verification",
    "CIFAR10_CONTENT_SHA256",
    "DataCorruptedError",
    "download",
    "write_subset",
]

DEFAULT_ROOT = "~/.cache/minicfg"
SUBSET_DIR = Path(__file__).parent / "subsets"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$MINICFG_DATA``, else ``~/.cache/minicfg``."""
    return Path(root or os.environ.get("MINICFG_DATA") or DEFAULT_ROOT).expanduser().resolve()


def offline() -> bool:
    """True when ``MINICFG_OFFLINE`` is set to a true value: never try to download."""
    return os.environ.get("MINICFG_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float().div_(127.5).sub_(1.0)


# -- readers of the official files ----------------------------------------------------------------
def _read_mnist(root: Path, train: bool, download: bool) -> TensorDataset:
    from torchvision.datasets import MNIST

    ds = MNIST(str(root), train=train, download=download)  # RuntimeError when absent (or the download failed)
    return TensorDataset(_to_unit_range(ds.data.unsqueeze(1)), ds.targets.long())


_CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]

#: SHA-256 of the official CIFAR-10 arrays, decoded from the python batches and concatenated in batch order as
#: C-contiguous uint8 bytes (pixels N x 3072, labels N): what a re-pickled copy (different file MD5s, same
#: content, e.g. an offline mirror) is checked against.
CIFAR10_CONTENT_SHA256 = {
    "train": {"data": "9d5c2eddadb0deff02c14c350c0385aab7b1d5ff1edfeb4997c8dc8644960111",
              "labels": "2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253"},
    "test": {"data": "177777c33ba79825320efa646ad04a94bdc3c80e4ebe3bd21724f8cdfd4b9d56",
             "labels": "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5"},
}


class DataCorruptedError(RuntimeError):
    """Files of a data set are present but hold other content than the official release."""


def _official_cifar10_md5s() -> dict[str, str]:
    """File name -> MD5 of the official python batches, from torchvision's own list (what it checks)."""
    from torchvision.datasets import CIFAR10

    return dict(CIFAR10.train_list + CIFAR10.test_list)


#: (folder, split, (name, size, mtime) of its files) -> how the split was verified; so a process checks once
_CIFAR_VERIFIED: dict[tuple, str] = {}


def _cifar_key(folder: Path, split: str, names: list[str]) -> tuple:
    stats = [(folder / n).stat() for n in names]
    return (str(folder.resolve()), split, tuple((n, st.st_size, st.st_mtime_ns) for n, st in zip(names, stats,
                                                                                                 strict=True)))


def _cifar_batches(folder: Path, names: list[str]) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """The raw bytes of each batch file and its decoded pixels (N, 3072) and labels (N,), both uint8."""
    raw, data, labels = [], [], []
    for name in names:
        blob = (folder / name).read_bytes()
        raw.append(blob)
        batch = pickle.loads(blob, encoding="bytes")  # the data set's official format: a pickle of plain arrays
        data.append(np.asarray(batch[b"data"], dtype=np.uint8))
        labels.append(np.asarray(batch[b"labels"], dtype=np.uint8))
    return raw, np.ascontiguousarray(np.concatenate(data)), np.ascontiguousarray(np.concatenate(labels))


def _verify_cifar10(folder: Path, split: str, raw: list[bytes], names: list[str], data: np.ndarray,
                    labels: np.ndarray) -> str:
    """"file MD5s" when every file is the official one, "content SHA-256" when the decoded arrays are the
    official ones; else a DataCorruptedError naming what differed."""
    official = _official_cifar10_md5s()
    if all(hashlib.md5(blob).hexdigest() == official.get(name) for blob, name in zip(raw, names, strict=True)):
        return "file MD5s"
    wrong = []
    for what, array in (("data", data), ("labels", labels)):
        expected, got = CIFAR10_CONTENT_SHA256[split][what], hashlib.sha256(array.tobytes()).hexdigest()
        if got != expected:
            wrong.append(f"{split} {what} ({array.shape[0]:,} rows): SHA-256 {got}, expected {expected}")
    if wrong:
        raise DataCorruptedError(
            f"CIFAR-10 not found or corrupted in {folder}: the files' MD5s differ from the official release and "
            f"so does the decoded content: {'; '.join(wrong)}. Delete the folder and run `minicfg download "
            f"--dataset cifar10` (needs internet), or point MINICFG_DATA at an intact copy."
        )
    return "content SHA-256"


def _read_cifar10(root: Path, train: bool, download: bool) -> TensorDataset:
    """The official python batches, verified once per process: by torchvision's file MD5s, or, for a copy that
    was re-pickled (other MD5s, e.g. an offline mirror), by the SHA-256 of the decoded arrays
    (:data:`CIFAR10_CONTENT_SHA256`). Other content raises :class:`DataCorruptedError`."""
    folder = root / "cifar-10-batches-py"
    if download and not all((folder / n).is_file() for n in _CIFAR_FILES):
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=train, download=True)
    if not all((folder / n).is_file() for n in _CIFAR_FILES):
        raise RuntimeError(f"CIFAR-10 batches missing from {folder}")
    split, names = ("train", _CIFAR_FILES[:5]) if train else ("test", _CIFAR_FILES[5:])
    key = _cifar_key(folder, split, names)
    raw, data, labels = _cifar_batches(folder, names)
    if key not in _CIFAR_VERIFIED:
        _CIFAR_VERIFIED[key] = _verify_cifar10(folder, split, raw, names, data, labels)
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
    return TensorDataset(_to_unit_range(images), torch.from_numpy(labels).long())


def cifar10_verification(train: bool = True, root=None) -> str:
    """How the CIFAR-10 split in the data folder was accepted: "file MD5s" (the official files) or "content
    SHA-256" (a re-pickled copy with the official arrays); reads and verifies it if this process has not yet."""
    split, names = ("train", _CIFAR_FILES[:5]) if train else ("test", _CIFAR_FILES[5:])
    folder = data_root(root) / "cifar-10-batches-py"
    key = _cifar_key(folder, split, names) if all((folder / n).is_file() for n in names) else None
    if key not in _CIFAR_VERIFIED:  # not read (or changed) since: read, which verifies or raises
        _read_cifar10(data_root(root), train, False)
        key = _cifar_key(folder, split, names)
    return _CIFAR_VERIFIED[key]


# -- the registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """Everything minicfg needs to know about one data set.

    Attributes:
        name: the registry key and CLI choice (``--dataset NAME``).
        image_shape: (channels, height, width) of one image.
        num_classes: real classes; the null label of CFG is the index ``num_classes``.
        reader: ``reader(root, train, download) -> TensorDataset`` of the full split (images in [-1, 1],
            int64 labels); raises RuntimeError or OSError when the files are absent.
        looked_for: the files the reader expects under the data folder (for error messages).
        class_names: one name per class, for titles and legends.
        weights: shipped weights by role ("model", "paper_model", "noisy_classifier", "evaluator"), file names inside
            ``minicfg/weights/``; a role without shipped weights is absent.
        preset: the training preset of ``minicfg.train.PRESETS`` that the diffusion model trains with
            (``minicfg train``'s default for this data set).
        evaluator_preset: the preset of its evaluation classifier (``minicfg train-evaluator``'s default).
        hflip: whether training flips images left-right at random (half of them, drawn from the seed and the
            epoch, so a resumed run flips the same images): true where a mirrored image is as real as the
            original (photos), false where it is not (digits).
        subset: file name inside ``minicfg/subsets/`` of the small shipped subset that smoke mode uses
            when the full data set is absent, or None.
        title: the name figures and tables print (None: ``name``).
    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    reader: Callable[[Path, bool, bool], TensorDataset]
    looked_for: str
    class_names: tuple[str, ...]
    weights: dict[str, str] = field(default_factory=dict)
    preset: str = "default"
    evaluator_preset: str = "evaluator"
    hflip: bool = False
    subset: str | None = None
    title: str | None = None

    def __post_init__(self):
        if self.title is None:
            object.__setattr__(self, "title", self.name)
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.image_shape) != 3:
            raise ValueError(f"{self.name}: image_shape must be (channels, height, width), got {self.image_shape}")


def _check_dataset(name: str, record) -> None:
    if not isinstance(record, Dataset) or record.name != name:
        raise ValueError(f"dataset {name!r} must be a Dataset record registered under its own name "
                         f"(register_dataset(record)), got {record!r}")


#: name -> :class:`Dataset`, in registration order; every ``--dataset`` option offers these names.
DATASETS = Registry("dataset", _check_dataset)
#: The data set every command, loader and metric uses when none is named (registered below).
DEFAULT_DATASET = "mnist"


def register_dataset(record: Dataset) -> Dataset:
    """Add a data set to the registry (its name becomes a choice of every ``--dataset`` option)."""
    return DATASETS.add(record.name, record)


def get_dataset(name: str | Dataset) -> Dataset:
    """The registry record of ``name`` (a record passes through); a ValueError lists the choices."""
    if isinstance(name, Dataset):
        return name
    return DATASETS.lookup(name)


register_dataset(Dataset(
    name="mnist", image_shape=(1, 28, 28), num_classes=10, reader=_read_mnist, looked_for="MNIST/raw/*-ubyte",
    class_names=tuple(str(d) for d in range(10)),
    weights={"model": "mnist.safetensors", "paper_model": "mnist_eps.safetensors",
             "weak_model": "mnist_weak.safetensors", "noisy_classifier": "mnist_noisy_classifier.safetensors",
             "conditional_model": "mnist_conditional.safetensors", "distilled_model": "mnist_distilled.safetensors",
             "evaluator": "mnist_evaluator.safetensors"},
    preset="default", evaluator_preset="evaluator", hflip=False, subset="mnist.npz", title="MNIST",
))
register_dataset(Dataset(
    name="cifar10", image_shape=(3, 32, 32), num_classes=10, reader=_read_cifar10,
    looked_for="cifar-10-batches-py/data_batch_1..5 and test_batch",
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    preset="cifar10", evaluator_preset="cifar10_evaluator", hflip=True, subset="cifar10.npz", title="CIFAR-10",
    weights={"model": "cifar10.safetensors", "evaluator": "cifar10_evaluator.safetensors"},
))


# -- loading --------------------------------------------------------------------------------------
def _missing(record: Dataset, root: Path, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{record.name} not found under {root} (looked for {record.looked_for}; {why}). Either download it "
        f"once with `minicfg download --dataset {record.name}` (needs internet), or point MINICFG_DATA at a "
        f"folder that already holds it in torchvision's layout, e.g. `export MINICFG_DATA=/path/to/data`."
    )


def _one_line(err: Exception, limit: int = 400) -> str:
    """An exception's message on one line, shortened in the middle (the reason is usually at the end)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2:]


_ANNOUNCED: set[tuple[str, bool]] = set()


def _read_subset(record: Dataset, train: bool, root: Path) -> TensorDataset:
    path = SUBSET_DIR / record.subset
    with np.load(path, allow_pickle=False) as f:
        split = "train" if train else "test"
        images, labels = torch.from_numpy(f[f"{split}_images"]), torch.from_numpy(f[f"{split}_labels"])
    if (record.name, train) not in _ANNOUNCED:
        _ANNOUNCED.add((record.name, train))
        print(f"minicfg: {record.name} is not under {root}; smoke mode uses the {len(labels):,} "
              f"{'training' if train else 'test'} images shipped in minicfg/subsets/{record.subset} "
              f"(`minicfg download --dataset {record.name}` or MINICFG_DATA gives the full set)", file=sys.stdout)
    return TensorDataset(_to_unit_range(images), labels.long())


def _download(record: Dataset, root: Path, train: bool) -> TensorDataset:
    """Read a split through the reader with downloading allowed; a failure becomes the clear error with its reason."""
    try:
        return record.reader(root, train, True)
    except DataCorruptedError:
        raise
    except (RuntimeError, OSError) as err:
        raise _missing(record, root, f"the download failed: {_one_line(err)}") from err


def load(name: str | Dataset, train: bool = True, download: bool | None = None, root=None) -> TensorDataset:
    """A data set as a TensorDataset of images (N, C, H, W) in [-1, 1] and int64 labels (N,).

    ``download=None`` (the default) downloads a missing data set unless ``MINICFG_OFFLINE`` is set;
    ``download=False`` never does. In smoke mode a missing data set is replaced by the shipped subset
    (without a download attempt). See the module docstring for the whole policy.
    """
    record = get_dataset(name)
    root = data_root(root)
    try:
        return record.reader(root, train, False)
    except DataCorruptedError:
        raise  # present but wrong: neither a subset nor a download should hide that
    except (RuntimeError, OSError):
        pass
    if is_smoke() and record.subset is not None:
        return _read_subset(record, train, root)
    if download is None:
        download = not offline()
    if not download:
        why = "downloads are off: MINICFG_OFFLINE is set" if offline() else "download=False"
        raise _missing(record, root, why)
    return _download(record, root, train)


def available(name: str, train: bool = True, root=None) -> bool:
    """Whether the full split of data set ``name`` is in the data folder (no download, no subset)."""
    try:
        get_dataset(name).reader(data_root(root), train, False)
    except (RuntimeError, OSError):
        return False
    return True


def mnist(train: bool = True, download: bool | None = None, root=None) -> TensorDataset:
    """MNIST: images (N, 1, 28, 28) in [-1, 1] and int64 labels; see :func:`load`."""
    return load("mnist", train=train, download=download, root=root)


def cifar10(train: bool = True, download: bool | None = None, root=None) -> TensorDataset:
    """CIFAR-10: images (N, 3, 32, 32) in [-1, 1] and int64 labels; see :func:`load`."""
    return load("cifar10", train=train, download=download, root=root)


def download(names, root=None) -> list[str]:
    """Fetch each named data set (both splits) into the data folder unless present; one line per split."""
    lines, folder = [], data_root(root)
    for name in names:
        record = get_dataset(name)
        for train in (True, False):
            ds = _download(record, folder, train)
            lines.append(f"{name} {'train' if train else 'test'}: {len(ds):,} images under {folder}")
    return lines


def write_subset(name: str, n_train_per_class: int = 200, n_test_per_class: int = 100, seed: int = 0,
                 out=None, root=None) -> Path:
    """Write the shipped smoke-mode subset of ``name``: a fixed, class-balanced draw from the full data set.

    The images are stored as uint8 in a compressed NPZ (``train_images``, ``train_labels``,
    ``test_images``, ``test_labels``), read without pickle. Made with
    ``python -c "from minicfg.data import write_subset; write_subset('mnist')"``.
    """
    record = get_dataset(name)
    out = Path(out) if out is not None else SUBSET_DIR / (record.subset or f"{record.name}.npz")
    arrays = {}
    for split, per_class in (("train", n_train_per_class), ("test", n_test_per_class)):
        images, labels = record.reader(data_root(root), split == "train", False).tensors
        g = torch.Generator().manual_seed(seed)
        idx = torch.cat([torch.nonzero(labels == c).flatten()[torch.randperm(int((labels == c).sum()), generator=g)]
                         [:per_class] for c in range(record.num_classes)])
        idx = idx[torch.randperm(len(idx), generator=g)]
        arrays[f"{split}_images"] = ((images[idx] + 1) * 127.5).round().to(torch.uint8).numpy()
        arrays[f"{split}_labels"] = labels[idx].to(torch.uint8).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out
