"""Drawing guided samples from a trained network, and writing them as a PNG grid or an NPZ file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import samplers
from .diffusion import check_labels
from .guidance import cfg_eps_fn, check_w, classifier_eps_fn
from .schedules import sampling_lams

__all__ = ["SAMPLERS", "generate", "generate_grid", "to_uint8", "grid_figure", "save_grid", "save_npz", "class_labels"]

SAMPLERS = ("ancestral", "ddim")


def class_labels(num_classes: int, n_per_class: int) -> torch.Tensor:
    """Labels 0,0,...,1,1,...: ``n_per_class`` of each class, class by class (a row per class in a grid)."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    return torch.arange(num_classes).repeat_interleave(n_per_class)


GUIDANCE = ("cfg", "classifier")


@torch.no_grad()  # not inference_mode: classifier guidance needs autograd for its gradient
def generate(
    model,
    labels: torch.Tensor,
    w=0.0,
    n_steps: int = 50,
    sampler: str = "ancestral",
    v: float = 0.3,
    seed: int = 0,
    noise: torch.Tensor | None = None,
    clip_x: tuple[float, float] | None = (-1.0, 1.0),
    batch_size: int = 500,
    lam_min: float = -20.0,
    lam_max: float = 20.0,
    progress: bool = False,
    guidance: str = "cfg",
    classifier=None,
    base: str = "uncond",
) -> torch.Tensor:
    """Sample images for ``labels`` with guidance of strength ``w`` (paper Alg. 2).

    ``guidance="cfg"`` is classifier-free guidance (paper Eq. 6); ``guidance="classifier"`` guides the
    ``base`` model ("uncond": the null label, as in Dhariwal & Nichol; "cond": the labels) with the
    gradient of the noisy ``classifier`` (paper Eq. 4). The starting noise is drawn from ``seed`` (or
    given as ``noise``), so the same seed gives the same starting noise for every ``w``. Returns images
    in [-1, 1] of shape (N, C, H, W).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if guidance not in GUIDANCE:
        raise ValueError(f"unknown guidance {guidance!r}; choose one of {GUIDANCE}")
    if guidance == "classifier" and classifier is None:
        raise ValueError("guidance='classifier' needs a noisy classifier (minicfg train-classifier)")
    if base not in ("uncond", "cond"):
        raise ValueError(f"base must be 'uncond' or 'cond', got {base!r}")
    cfg = model.config
    check_labels(labels, cfg.num_classes, allow_null=True)
    check_w(w)
    n = labels.shape[0]
    device = next(model.parameters()).device
    shape = (n, cfg.image_channels, cfg.image_size, cfg.image_size)
    if noise is None:
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(shape, generator=g)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
    w_all = torch.as_tensor(w, dtype=torch.float32).expand(n) if torch.is_tensor(w) else None
    lams = sampling_lams(n_steps, lam_min, lam_max)
    out = []
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        y = labels[sl].to(device)
        wb = w_all[sl].to(device) if w_all is not None else w
        if guidance == "cfg":
            eps_fn = cfg_eps_fn(model, y, wb, cfg.num_classes)
        else:
            unguided = cfg_eps_fn(model, y, -1.0 if base == "uncond" else 0.0, cfg.num_classes)
            eps_fn = classifier_eps_fn(unguided, classifier, y, wb)
        z = noise[sl].to(device)
        if sampler == "ancestral":
            g = torch.Generator(device=device).manual_seed(seed + 1 + start)
            x = samplers.ancestral(eps_fn, z, lams, v=v, clip_x=clip_x, generator=g, progress=progress)
        else:
            x = samplers.ddim(eps_fn, z, lams, clip_x=clip_x, progress=progress)
        out.append(x.cpu())
    return torch.cat(out)


def generate_grid(model, ws, n_per_class: int = 8, seed: int = 0, **kwargs) -> dict[float, torch.Tensor]:
    """Samples for each ``w`` in ``ws`` from the same starting noise: {w: images}, rows class by class."""
    labels = class_labels(model.config.num_classes, n_per_class)
    return {float(w): generate(model, labels, w, seed=seed, **kwargs) for w in ws}


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] to uint8 [0, 255] (N, C, H, W)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def grid_figure(panels: dict[float, torch.Tensor], n_per_class: int, title: str | None = None):
    """A matplotlib Figure with one panel per ``w``; in each a row per class (shared noise across panels).

    Keys that are numbers are titled "w = ..."; other keys (e.g. "score x 2") are used as titles as given.

    Built without pyplot, so it neither changes a notebook's backend nor needs closing; show it in a
    notebook by leaving it as a cell's last expression, save it with ``fig.savefig``.
    """
    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    fig = Figure(figsize=(2.2 * len(panels) * n_per_class / 8 + 0.4, 2.6), dpi=110)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (w, imgs) in zip(axes, panels.items(), strict=True):
        grid = make_grid((imgs.clamp(-1, 1) + 1) / 2, nrow=n_per_class, padding=1, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", interpolation="nearest")
        ax.set_title(f"w = {w:g}" if isinstance(w, (int, float)) else str(w), fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_grid(panels: dict[float, torch.Tensor], n_per_class: int, path, title: str | None = None) -> Path:
    """Write :func:`grid_figure` as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_figure(panels, n_per_class, title).savefig(path)
    return path


def save_npz(panels: dict[float, torch.Tensor], labels: torch.Tensor, path) -> Path:
    """Write ``images`` (uint8 N x C x H x W), ``labels`` (int64 N) and ``w`` (float32 N) for evaluation."""
    path = Path(path)
    images = np.concatenate([to_uint8(x) for x in panels.values()])
    all_labels = np.concatenate([labels.numpy().astype(np.int64)] * len(panels))
    ws = np.concatenate([np.full(labels.shape[0], w, dtype=np.float32) for w in panels])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, labels=all_labels, w=ws)
    return path


def training_preview(trainer, ws=(0.0, 1.0), n_per_class: int = 6, n_steps: int = 30) -> Path:
    """Sample a small grid from a Trainer's EMA model into ``OUT/samples.png`` (called during training)."""
    model = trainer.ema.module
    was_training = model.training
    model.eval()
    panels = generate_grid(model, ws, n_per_class=n_per_class, n_steps=n_steps, sampler="ddim", seed=0)
    model.train(was_training)
    return save_grid(panels, n_per_class, Path(trainer.out) / "samples.png", title=f"step {trainer.step}")
