"""The MNIST evaluation classifier: a small CNN trained on clean digits, the feature extractor of ``metrics``.

This is *not* the noisy classifier of classifier guidance (notebook 04): that one sees noisy ``z_lam``
and its gradient steers sampling. The evaluator sees only clean images, never any sample, and is only
used to score samples afterwards (classifier FID, inception score, precision/recall, label accuracy).
Keeping the two apart matters: scoring guided samples with the classifier that guided them would reward
adversarial pixel patterns that fool that very network.

Architecture (``EvaluatorNet``): conv-conv-pool-conv-pool-conv-pool, then a 128-d feature layer
(ReLU, dropout in training) and a linear layer to 10 logits. Inputs are images in [-1, 1] of shape
(N, 1, 28, 28), like everything else in minicfg. The shipped weights live in
``minicfg/weights/mnist_evaluator.safetensors`` with the command that made them, its wall time and the
measured test accuracy in ``mnist_evaluator.json``. The network itself is ``minicfg.nets.EvaluatorNet``; it
is trained by the same ``Trainer`` as every other network, under the preset ``evaluator``
(``minicfg train-evaluator``), with :func:`evaluator_loss` as its objective.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import load_model
from .data import DEFAULT_DATASET
from .nets import EvaluatorNet

__all__ = ["load_evaluator", "test_accuracy", "random_affine", "evaluator_loss", "random_translate",
           "cifar_evaluator_loss", "evaluator_report"]


# -- training -------------------------------------------------------------------------------------
def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 10.0, scale: float = 0.1,
                  shift: float = 2.0, rows: slice | None = None) -> torch.Tensor:
    """Per-image random rotation (+-degrees), scaling (1 +- scale) and shift (+-shift pixels); background -1.
    With ``rows``, the draws are made for the whole batch and only those rows are transformed and returned."""
    u = torch.rand(x.shape[0], 4, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
    if rows is not None:
        x, u = x[rows], u[rows]
    n, _, height, width = x.shape
    angle = u[:, 0] * math.radians(degrees)
    s = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    tx, ty = u[:, 2] * shift * 2 / width, u[:, 3] * shift * 2 / height
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # shift to [0, 2] so that zero padding is the -1 background, then back
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``images`` in [-1, 1] on the CPU, in batches on the model's device, in eval mode (the model's
    mode is restored)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(images[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last)).cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0, model.config.num_classes)


def test_accuracy(model: nn.Module, images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                  dataset: str = DEFAULT_DATASET) -> float:
    """Accuracy on ``images`` and ``labels``, by default the test split of ``dataset`` (10,000 MNIST digits)."""
    from . import data

    if images is None:
        images, labels = data.load(dataset, train=False).tensors
    return float((predict_logits(model, images).argmax(1) == labels).float().mean())


def evaluator_loss(model, x, labels, recipe, num_classes, generator, rows: slice | None = None) -> torch.Tensor:
    """The evaluator's training objective: cross-entropy on lightly augmented clean images (:func:`random_affine`)."""
    return F.cross_entropy(model(random_affine(x, generator, rows=rows)), labels if rows is None else labels[rows])


def random_translate(x: torch.Tensor, generator: torch.Generator, shift: int = 2,
                     rows: slice | None = None) -> torch.Tensor:
    """Per-image random translation by up to ``shift`` pixels each way, the border reflected (a crop of the image
    padded by reflection). With ``rows``, offsets are drawn for the whole batch and only those rows returned."""
    offsets = torch.randint(0, 2 * shift + 1, (x.shape[0], 2), generator=generator, device=x.device)
    if rows is not None:
        x, offsets = x[rows], offsets[rows]
    n, _, height, width = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
    iy = offsets[:, :1] + torch.arange(height, device=x.device)  # (n, height)
    ix = offsets[:, 1:] + torch.arange(width, device=x.device)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # indexing (n, 1, 1), channels, (n, H, 1), (n, 1, W) puts the channel axis last: (n, H, W, C)
    return padded[batch, :, iy[:, :, None], ix[:, None, :]].permute(0, 3, 1, 2).contiguous(
        memory_format=torch.channels_last)


def cifar_evaluator_loss(model, x, labels, recipe, num_classes, generator, rows: slice | None = None) -> torch.Tensor:
    """The CIFAR-10 evaluator's objective: cross-entropy with label smoothing 0.2 on images translated by up to
    2 pixels (:func:`random_translate`); the Trainer flips them (the data set record's ``hflip``)."""
    logits = model(random_translate(x, generator, rows=rows))
    return F.cross_entropy(logits.float(), labels if rows is None else labels[rows], label_smoothing=0.2)


def evaluator_report(model, dataset: str) -> dict:
    """What is recorded beside trained evaluator weights: the test accuracy and the machine it was measured on."""
    return {"test_accuracy": round(test_accuracy(model, dataset=dataset), 5),
            "machine": f"{cpu_name()}: {os.cpu_count()} CPU cores, torch using {torch.get_num_threads()} thread(s)"}


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, written beside every recorded figure."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


# -- loading --------------------------------------------------------------------------------------
def load_evaluator(path=None, dataset: str = DEFAULT_DATASET, device=None) -> tuple[EvaluatorNet, dict]:
    """The evaluator of ``dataset`` (the shipped one if ``path`` is None), frozen: (model in eval mode, metadata),
    on ``device`` (None: the best available; the metrics move images to it and results back).

    Reads through :func:`minicfg.checkpoint.load_model` (role "evaluator"), so a missing, truncated or
    foreign file gives a :class:`~minicfg.checkpoint.CheckpointError` naming the problem.
    """
    model, meta = load_model(path, dataset=dataset, role="evaluator", device=device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, meta
