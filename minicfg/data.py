"""MNIST and CIFAR-10 as tensors in [-1, 1], read through torchvision from the folder ``MINICFG_DATA``.

Nothing is downloaded unless asked (``download=True`` or ``minicfg download``); offline with no data
the error names the folder that was searched and how to point the project at a copy.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["data_root", "mnist", "cifar10", "DATASETS", "load", "NUM_CLASSES", "IMAGE_SHAPES"]

DEFAULT_ROOT = "~/.cache/minicfg"
NUM_CLASSES = {"mnist": 10, "cifar10": 10}
IMAGE_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$MINICFG_DATA``, else ``~/.cache/minicfg``."""
    return Path(root or os.environ.get("MINICFG_DATA") or DEFAULT_ROOT).expanduser().resolve()


def _missing(name: str, root: Path, expected: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name} not found under {root} (looked for {expected}). Either download it once with "
        f"`minicfg download --dataset {name.lower().replace('-', '')}` (or {name.lower().replace('-', '')}"
        f"(download=True)), or point MINICFG_DATA at a folder that already holds it in torchvision's layout, "
        f"e.g. `export MINICFG_DATA=/path/to/data`."
    )


def _to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float().div_(127.5).sub_(1.0)


def mnist(train: bool = True, download: bool = False, root=None) -> TensorDataset:
    """MNIST as a TensorDataset of images (N, 1, 28, 28) in [-1, 1] and int64 labels (N,)."""
    from torchvision.datasets import MNIST

    root = data_root(root)
    try:
        ds = MNIST(str(root), train=train, download=download)
    except RuntimeError as err:
        raise _missing("MNIST", root, "MNIST/raw/*-ubyte") from err
    images = _to_unit_range(ds.data.unsqueeze(1))
    return TensorDataset(images, ds.targets.long())


def _cifar_files_present(folder: Path) -> bool:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return all((folder / n).is_file() for n in names)


def cifar10(train: bool = True, download: bool = False, root=None) -> TensorDataset:
    """CIFAR-10 as a TensorDataset of images (N, 3, 32, 32) in [-1, 1] and int64 labels (N,).

    The batches are read directly (the official python pickles of arrays), so a copy whose file
    checksums differ from torchvision's list but whose contents are intact still loads.
    """
    root = data_root(root)
    folder = root / "cifar-10-batches-py"
    if download and not _cifar_files_present(folder):
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=train, download=True)
    if not _cifar_files_present(folder):
        raise _missing("CIFAR-10", root, "cifar-10-batches-py/data_batch_1..5 and test_batch")
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    data, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            # the data set's official format is a python pickle of plain arrays
            batch = pickle.load(f, encoding="bytes")
        data.append(np.asarray(batch[b"data"], dtype=np.uint8))
        labels.extend(batch[b"labels"])
    images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32))
    return TensorDataset(_to_unit_range(images), torch.tensor(labels, dtype=torch.int64))


DATASETS = {"mnist": mnist, "cifar10": cifar10}


def load(name: str, train: bool = True, download: bool = False, root=None) -> TensorDataset:
    """Load a data set by name ("mnist" or "cifar10")."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](train=train, download=download, root=root)
