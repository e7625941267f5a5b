"""The standard FID (Inception-v3 pool features) through torch-fidelity: an optional extra, never a download.

The project's own metrics (:mod:`minicfg.metrics`) run offline on a small evaluator trained per data set. The FID
of the papers instead compares 2048-d pool features of an ImageNet-trained Inception-v3 on images upsampled to
299 x 299. This module computes it with torch-fidelity from a weights file already on disk:

    pip install "minicfg[fid]"
    inception_fid(images, weights="/path/to/weights-inception-2015-12-05-6726825d.pth")

minicfg never fetches the weights (torch-fidelity would download them when given no path; here a path is required).
How the two FIDs differ, and why the default is the offline one: ``docs/metrics.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ._checks import as_images
from .data import DEFAULT_DATASET
from .devices import pick_device

__all__ = ["WEIGHTS_FILE", "INSTALL", "require_torch_fidelity", "check_weights", "to_rgb_uint8", "inception_fid"]

#: The file torch-fidelity's FID feature extractor loads (its URL_INCEPTION_V3, version 0.4.0).
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
#: What installs the optional dependency.
INSTALL = 'pip install "minicfg[fid]"'


def require_torch_fidelity():
    """The torch_fidelity module, or an ImportError that names the install command."""
    try:
        import torch_fidelity
    except ImportError as err:
        raise ImportError(f"the Inception FID needs torch-fidelity, which is not installed here: {INSTALL} "
                          f"(or pip install torch-fidelity)") from err
    return torch_fidelity


def check_weights(path) -> Path:
    """``path`` as a Path when it is a file; else a FileNotFoundError that says which file is expected."""
    what = (f"the Inception-v3 FID weights that torch-fidelity uses ({WEIGHTS_FILE}, about 96 MB, from "
            f"torch-fidelity's GitHub releases); minicfg never downloads them, so fetch the file once on a machine "
            f"with internet and pass its path")
    if path is None or str(path).strip() == "":
        raise FileNotFoundError(f"no Inception weights given: pass the path of {what}")
    p = Path(path).expanduser()
    if not p.is_file():
        kind = "is a folder" if p.is_dir() else "does not exist"
        raise FileNotFoundError(f"Inception weights {p} {kind}: expected the path of {what}")
    return p


def to_rgb_uint8(images, shape: tuple[int, int, int]) -> torch.Tensor:
    """Images (uint8 0..255 or float in [-1, 1], (N, *shape)) as the uint8 (N, 3, H, W) that torch-fidelity reads;
    one-channel images are repeated into three. uint8 input comes back unchanged."""
    x = as_images(images, shape)  # float in [-1, 1]; uint8 v becomes v / 127.5 - 1, which rounds back to v
    x = ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"the Inception network reads 1- or 3-channel images, got {x.shape[1]} channels")
    return x.contiguous()


class _Images(Dataset):
    """A uint8 (N, 3, H, W) tensor as the Dataset of single images that torch-fidelity iterates over."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _use_cuda(device) -> bool:
    """Whether torch-fidelity should run on cuda: None means when available; a cuda device must exist
    (:func:`minicfg.devices.pick_device` says why not); anything but cuda or cpu is refused."""
    if device is None:
        return torch.cuda.is_available()
    kind = torch.device(device).type
    if kind not in ("cuda", "cpu"):
        raise ValueError(f"torch-fidelity runs its network on cuda or cpu only, got device {str(device)!r}: "
                         f"pass device='cpu' (or 'cuda')")
    return pick_device(device).type == "cuda"


def inception_fid(images, reference="test", dataset: str = DEFAULT_DATASET, weights=None, device=None,
                  cache: bool = True, batch_size: int = 64, verbose: bool = False) -> float:
    """The Inception FID between ``images`` and ``reference`` (lower is better), computed by torch-fidelity.

    ``images``: uint8 0..255 or float in [-1, 1], (N, C, H, W) of ``dataset``'s image shape (grey images are repeated
    into three channels). ``reference``: "test" or "train" (that split of ``dataset``, read by
    :func:`minicfg.data.load`) or real images in the same form. ``weights``: the local file torch-fidelity's FID
    extractor loads (:data:`WEIGHTS_FILE`); required. ``device``: "cpu", "cuda" or "cuda:N" (None: cuda when available).
    With ``cache`` the statistics of a named reference are kept by torch-fidelity under
    ``$MINICFG_DATA/minicfg-cache/inception/``, keyed by data set, split, size and a hash of the weights file, so the
    reference is passed through Inception once per weights file, not once per call. Both sets need N >= 2.
    """
    fidelity = require_torch_fidelity()
    weights = check_weights(weights)
    cuda = _use_cuda(device)
    from . import data

    shape = data.get_dataset(dataset).image_shape
    fake = to_rgb_uint8(images, shape)
    options = {}
    if isinstance(reference, str):
        if reference not in ("test", "train"):
            raise ValueError(f"reference must be 'test', 'train', or images; got {reference!r}")
        real = to_rgb_uint8(data.load(dataset, train=reference == "train").tensors[0], shape)
        if cache:
            options = {"input2_cache_name": f"minicfg-{dataset}-{reference}-{len(real)}-{_file_digest(weights)}",
                       "cache_root": str(data.data_root() / "minicfg-cache" / "inception")}
    else:
        real = to_rgb_uint8(reference, shape)
    if min(len(fake), len(real)) < 2:
        raise ValueError(f"the FID needs at least 2 images in each set, got {len(fake)} and {len(real)}")
    index = torch.device(device).index if cuda and device is not None else None
    # torch-fidelity moves its network with .cuda(), onto the current CUDA device: make that the one asked for
    with torch.cuda.device(index) if index is not None else contextlib.nullcontext():
        metrics = fidelity.calculate_metrics(
            input1=_Images(fake), input2=_Images(real), fid=True, feature_extractor_weights_path=str(weights),
            cuda=cuda, batch_size=batch_size, verbose=verbose, cache=bool(options), datasets_download=False,
            save_cpu_ram=True,  # its DataLoader then uses no worker processes: the images are already in memory
            **options)
    return float(metrics[fidelity.KEY_METRIC_FID])
