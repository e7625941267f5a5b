"""Writing samples as a PNG grid or an NPZ file (the sampling itself lives in ``minicfg.generate``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from .data import DEFAULT_DATASET
from .generate import class_labels, generate_grid
from .guidance import DEFAULT_GUIDANCE

__all__ = ["to_uint8", "grid_figure", "save_grid", "save_npz", "npz_dataset", "read_npz", "sample_to_file",
           "load_guidance_networks"]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] to uint8 [0, 255] (N, C, H, W)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def grid_figure(panels: dict[float, torch.Tensor], n_per_class: int, title: str | None = None,
                row_names: list[str] | None = None):
    """A matplotlib Figure with one panel per ``w``; in each a row per class (shared noise across panels).

    Keys that are numbers are titled "w = ..."; other keys (e.g. "score x 2") are used as titles as given.
    ``row_names`` (one per row, e.g. the class names) are written to the left of the first panel's rows.

    The figure is sized from the grids' pixel counts, not fixed: at the figure's dpi every image pixel covers
    2 x 2 screen pixels (a 28-pixel digit is drawn 56 pixels tall), however many rows and panels there are.

    Built without pyplot, so it neither changes a notebook's backend nor needs closing; show it in a
    notebook by leaving it as a cell's last expression, save it with ``fig.savefig``.
    """
    from matplotlib.figure import Figure
    from matplotlib.textpath import TextPath
    from torchvision.utils import make_grid

    scale, dpi, font = 2, 110, 9        # screen pixels per image pixel; dots per inch; title size in points
    margin, gap = 8, 16                 # pixels around the figure and between panels

    def text_size(text: str) -> tuple[float, float]:  # (width, height) of a title in pixels
        lines = text.split("\n")
        width = max(TextPath((0, 0), line or " ", size=font).get_extents().width for line in lines)
        return width * dpi / 72 + 4, len(lines) * 1.3 * font * dpi / 72 + 6

    grids = [make_grid((imgs.clamp(-1, 1) + 1) / 2, nrow=n_per_class, padding=1, pad_value=1.0)
             for imgs in panels.values()]
    names = [f"w = {w:g}" if isinstance(w, (int, float)) else str(w) for w in panels]
    sizes = [(scale * g.shape[2], scale * g.shape[1]) for g in grids]           # (width, height) in pixels
    n_rows = -(-len(next(iter(panels.values()))) // n_per_class)
    if row_names is not None and len(row_names) != n_rows:
        raise ValueError(f"row_names has {len(row_names)} names for {n_rows} rows of {n_per_class} images; "
                         "give one name per row")
    labels = max(text_size(name)[0] for name in row_names) if row_names else 0.0  # the names' column, pixels
    slots = [max(w, text_size(name)[0]) for (w, _), name in zip(sizes, names, strict=True)]
    head = round(max(text_size(name)[1] for name in names))
    top = round(text_size(title)[1]) if title else 0
    content = labels + sum(slots) + gap * (len(slots) - 1)
    width = round(max(content, text_size(title)[0] if title else 0.0) + 2 * margin)
    height = round(margin + top + head + max(h for _, h in sizes) + margin)
    # half a pixel of slack so that the canvas, which truncates to whole pixels, keeps every one
    fig = Figure(figsize=((width + 0.5) / dpi, (height + 0.5) / dpi), dpi=dpi)
    W, H = width + 0.5, height + 0.5
    x = (width - content) / 2 + labels
    if row_names:  # centred on the first panel's rows, right-aligned against it
        h, grid_h = sizes[0][1], grids[0].shape[1]
        image_h = (grid_h - 1) / n_rows  # a row's height in grid pixels, its line included
        for r, name in enumerate(row_names):
            centre = height - margin - top - head - h * (1 + r * image_h + (image_h - 1) / 2) / grid_h
            fig.text((round(x + (slots[0] - sizes[0][0]) / 2) - 3) / W, centre / H, name, fontsize=font,
                     ha="right", va="center")
    for grid, name, (w, h), slot in zip(grids, names, sizes, slots, strict=True):
        left = round(x + (slot - w) / 2)
        bottom = height - margin - top - head - h
        ax = fig.add_axes((left / W, bottom / H, w / W, h / H))
        ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", interpolation="nearest")
        ax.set_title(name, fontsize=font, pad=3)
        ax.axis("off")
        x += slot + gap
    if title:
        fig.suptitle(title, fontsize=font, y=1 - margin / 2 / H, va="top")
    return fig


def save_grid(panels: dict[float, torch.Tensor], n_per_class: int, path, title: str | None = None) -> Path:
    """Write :func:`grid_figure` as a PNG (at the figure's own dpi, so each image pixel stays 2 x 2 pixels)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = grid_figure(panels, n_per_class, title)
    fig.savefig(path, dpi=fig.dpi)
    return path


def save_npz(panels: dict[float, torch.Tensor], labels: torch.Tensor, path, dataset: str | None = None) -> Path:
    """Write ``images`` (uint8 N x C x H x W), ``labels`` (int64 N) and ``w`` (float32 N) for evaluation, and
    ``dataset`` (the data set's registry name, a string) when given, so that `minicfg evaluate` and `minicfg
    classify` know which data set the images belong to."""
    path = Path(path)
    images = np.concatenate([to_uint8(x) for x in panels.values()])
    all_labels = np.concatenate([labels.numpy().astype(np.int64)] * len(panels))
    ws = np.concatenate([np.full(labels.shape[0], w, dtype=np.float32) for w in panels])
    extra = {} if dataset is None else {"dataset": np.array(dataset)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, labels=all_labels, w=ws, **extra)
    return path


_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile)


def _hint(require) -> str:
    wanted = ["images (uint8 N x C x H x W)"] + [f"{k} ({'int' if k == 'labels' else 'float'} N)"
                                                 for k in ("labels", "w") if k in require]
    optional = [k for k in ("labels", "w") if k not in require]
    return (f"expected {', '.join(wanted)}" + (f" and, optionally, {' and '.join(optional)}" if optional else "")
            + ", as `minicfg sample --out FILE.npz` writes")


def _recorded_dataset(path: Path, npz) -> str | None:
    """The data set name an open NPZ records (key ``dataset``), checked to be a registered one; None if absent."""
    from .data import DATASETS

    if "dataset" not in npz.files:
        return None
    try:
        value = npz["dataset"]
    except _READ_ERRORS as err:
        raise ValueError(f"{path} is corrupt ({_one_line(err)})") from err
    name = str(value) if value.shape == () and value.dtype.kind == "U" else None
    if name not in DATASETS:
        raise ValueError(f"{path}: its dataset entry must name one of {sorted(DATASETS)}, got {value!r}; delete the "
                         f"entry, or write the file again with `minicfg sample --dataset NAME --out FILE.npz`")
    return name


def _resolve_dataset(path: Path, recorded: str | None, dataset: str | None) -> str:
    if recorded is not None and dataset is not None and recorded != dataset:
        raise ValueError(f"{path} holds {recorded} images (recorded by `minicfg sample`), but --dataset {dataset} was "
                         f"given: leave out --dataset, or pass --dataset {recorded}")
    return recorded or dataset or DEFAULT_DATASET


def npz_dataset(path, dataset: str | None = None) -> str:
    """The data set of an NPZ's images: the one recorded in it (`minicfg sample` writes ``dataset``), which a
    ``dataset`` given as well must equal (else a ValueError naming both); ``dataset`` where the file records none;
    else mnist. A file that cannot be read is left for :func:`read_npz` to report."""
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (*_READ_ERRORS, FileNotFoundError):
        return dataset or DEFAULT_DATASET
    if not isinstance(npz, np.lib.npyio.NpzFile):
        return dataset or DEFAULT_DATASET
    with npz:
        return _resolve_dataset(path, _recorded_dataset(path, npz), dataset)


def read_npz(path, dataset: str | None = None, require=("images",), null_label: bool = True) -> dict:
    """Read and check an NPZ of images as :func:`save_npz` writes it: ``images`` uint8 (N, C, H, W) of its data
    set's shape, ``labels`` int (N,) and ``w`` float (N,); the keys in ``require`` must be there, the others may
    be. Labels lie in 0..num_classes-1, or also num_classes (the null label) when ``null_label``. The data set is
    the one the file records, else ``dataset``, else mnist (:func:`npz_dataset`; a disagreement is an error).

    Returns ``{"images": uint8 array, "labels": int64 array or None, "w": float64 array or None, "dataset": the
    data set's name}``. Any problem (no file, not an NPZ, a missing key, a wrong dtype, shape or range, another
    data set than ``dataset``) raises a one-line error naming the fix.
    """
    from .data import get_dataset

    path = Path(path)
    hint = _hint(require)
    if not path.is_file():
        raise FileNotFoundError(f"no samples file at {path} (write one with `minicfg sample --out FILE.npz`)")
    try:
        npz = np.load(path, allow_pickle=False)
    except _READ_ERRORS as err:
        raise ValueError(f"{path} is not a readable .npz file ({_one_line(err)}); {hint}") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz archive; {hint}")
    with npz:
        record = get_dataset(_resolve_dataset(path, _recorded_dataset(path, npz), dataset))
        missing = [key for key in ("images", "labels", "w") if key in require and key not in npz.files]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)} (it holds {', '.join(npz.files) or 'nothing'}); "
                             f"{hint}")
        try:
            out = {key: npz[key] if key in npz.files else None for key in ("images", "labels", "w")}
        except _READ_ERRORS as err:
            raise ValueError(f"{path} is corrupt ({_one_line(err)})") from err
    images, labels, w = out["images"], out["labels"], out["w"]
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: images must be uint8 (0..255), got {images.dtype}; {hint}")
    if images.ndim != 4 or images.shape[1:] != record.image_shape:
        shape = ", ".join(map(str, record.image_shape))
        raise ValueError(f"{path}: images must have shape (N, {shape}) for {record.name}, got {images.shape}; pass "
                         f"--dataset for another data set")
    n = images.shape[0]
    if n == 0:
        raise ValueError(f"{path} holds no images")
    if labels is not None:
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{path}: labels must be integers of shape ({n},), got {labels.dtype} {labels.shape}")
        k = record.num_classes
        if labels.min() < 0 or labels.max() > (k if null_label else k - 1):
            allowed = f"0..{k - 1} (or {k}, the null label)" if null_label else f"0..{k - 1}"
            raise ValueError(f"{path}: labels must be classes {allowed}, got {labels.min()}..{labels.max()}")
        out["labels"] = labels.astype(np.int64)
    if w is not None:
        if w.shape != (n,) or not np.issubdtype(w.dtype, np.floating) or not np.isfinite(w).all():
            raise ValueError(f"{path}: w must be finite floats of shape ({n},), got {w.dtype} {w.shape}")
        out["w"] = w.astype(np.float64)
    out["dataset"] = record.name
    return out


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def load_guidance_networks(guidance: str, options: dict, dataset: str, device="cpu") -> dict:
    """Guidance options that are networks (the method record's ``networks``), given as a path or left out, are
    loaded from the model store (the shipped network of ``dataset`` when left out)."""
    from .checkpoint import load_model
    from .guidance import get_guidance_method

    options = dict(options)
    for key, role in get_guidance_method(guidance).networks.items():
        if options.get(key) is None or isinstance(options[key], (str, Path)):
            options[key], _ = load_model(options.get(key), dataset=dataset, role=role, device=device)
    return options


def sample_to_file(out, ws, checkpoint=None, dataset: str = DEFAULT_DATASET, n_per_class: int = 8, seed: int = 0,
                   guidance: str = DEFAULT_GUIDANCE, progress: bool = False, device=None,
                   **options) -> tuple[Path, int]:
    """``minicfg sample``: guided samples at every w from the same noise into ``out`` (.png grid or .npz arrays).

    ``checkpoint`` is a weights file or training folder (None: the shipped model of ``dataset``; a file trained on
    another data set is refused); an NPZ records ``dataset`` beside the images; the
    remaining ``options`` (``n_steps``, ``sampler``, and the guidance's and sampler's own options) go to
    :func:`minicfg.generate.generate_grid`. The networks run on ``device`` (None: the best available, see
    :func:`minicfg.devices.pick_device`). Returns (path written, number of samples).
    """
    from .checkpoint import load_model
    from .devices import pick_device

    out = Path(out)
    if out.suffix not in (".png", ".npz"):
        raise ValueError(f"--out must end in .png (a grid) or .npz (arrays), got {out.name!r}")
    device = pick_device(device)
    model, _ = load_model(checkpoint, dataset=dataset, device=device)
    options = load_guidance_networks(guidance, options, dataset, device)
    panels = generate_grid(model, ws, n_per_class=n_per_class, seed=seed, guidance=guidance, progress=progress,
                           **options)
    if out.suffix == ".png":
        save_grid(panels, n_per_class, out)
    else:
        save_npz(panels, class_labels(model.config.num_classes, n_per_class), out, dataset=dataset)
    return out, sum(len(x) for x in panels.values())
