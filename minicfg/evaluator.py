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
measured test accuracy in ``mnist_evaluator.json``.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .checkpoint import WEIGHTS_DIR, CheckpointError, load_tensors, save_weights

__all__ = [
    "EvaluatorConfig",
    "EvaluatorNet",
    "EVALUATOR_KIND",
    "SHIPPED_EVALUATOR",
    "train_evaluator",
    "load_evaluator",
    "test_accuracy",
    "fingerprint",
]

EVALUATOR_KIND = "mnist-evaluator"
SHIPPED_EVALUATOR = WEIGHTS_DIR / "mnist_evaluator.safetensors"


@dataclass
class EvaluatorConfig:
    """Architecture of :class:`EvaluatorNet`; stored in the weights file's metadata (key ``model``)."""

    channels: tuple[int, int, int, int] = (16, 32, 32, 64)
    feature_dim: int = 128
    dropout: float = 0.3
    num_classes: int = 10
    arch: str = EVALUATOR_KIND

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"channels must be 4 positive integers, got {self.channels}")
        if self.arch != EVALUATOR_KIND:
            raise ValueError(f"not an evaluator config (arch {self.arch!r}, expected {EVALUATOR_KIND!r})")

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class EvaluatorNet(nn.Module):
    """Small MNIST CNN: ``forward(x) -> logits`` and ``features(x) -> (N, feature_dim)`` penultimate features.

    28x28 -> conv, conv, pool -> 14x14 -> conv, pool -> 7x7 -> conv, pool -> 3x3 -> linear to the
    feature layer (ReLU) -> dropout -> linear to logits. 108k parameters (0.44 MB in float32).
    """

    def __init__(self, config: EvaluatorConfig | None = None):
        super().__init__()
        self.config = config = config or EvaluatorConfig()
        c1, c2, c3, c4 = config.channels
        self.body = nn.Sequential(
            _conv(1, c1), _conv(c1, c2), nn.MaxPool2d(2),  # 14x14
            _conv(c2, c3), nn.MaxPool2d(2),  # 7x7
            _conv(c3, c4), nn.MaxPool2d(2),  # 3x3
            nn.Flatten(),
        )
        self.fc = nn.Linear(c4 * 9, config.feature_dim)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (after ReLU, before dropout) of images in [-1, 1], shape (N, feature_dim)."""
        return F.relu(self.fc(self.body(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


def fingerprint(model: nn.Module) -> str:
    """A short hash of a model's weights, to key caches of features computed with it."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# -- training -------------------------------------------------------------------------------------
def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 10.0, scale: float = 0.1,
                  shift: float = 2.0) -> torch.Tensor:
    """Per-image random rotation (+-degrees), scaling (1 +- scale) and shift (+-shift pixels); background -1."""
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
    angle = u[:, 0] * math.radians(degrees)
    s = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    tx, ty = u[:, 2] * shift * 2 / w, u[:, 3] * shift * 2 / h
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # shift to [0, 2] so that zero padding is the -1 background, then back
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``images`` in [-1, 1], in batches, in eval mode (the model's mode is restored)."""
    was = model.training
    model.eval()
    out = [model(images[i:i + batch_size].contiguous(memory_format=torch.channels_last))
           for i in range(0, len(images), batch_size)]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0, model.config.num_classes)


def test_accuracy(model: nn.Module, dataset=None) -> float:
    """Accuracy on the 10,000 MNIST test digits (or on ``dataset``, a TensorDataset of images and labels)."""
    from . import data

    images, labels = (dataset or data.mnist(train=False)).tensors
    return float((predict_logits(model, images).argmax(1) == labels).float().mean())


def train_evaluator(
    out_path=None,
    epochs: int = 4,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 4e-3,
    weight_decay: float = 5e-4,
    augment: bool = True,
    progress: bool = True,
    command: str | None = None,
    train_data=None,
    test_data=None,
) -> tuple[EvaluatorNet, dict]:
    """Train the evaluation classifier on clean MNIST and (if ``out_path``) save it with its provenance.

    Recipe: AdamW, one-cycle learning-rate schedule (``torch.optim.lr_scheduler.OneCycleLR``) peaking at
    ``lr``, mini-batches of ``batch_size``, light random affine augmentation (rotation +-10 degrees,
    scale +-10%, shift +-2 px), fp32 in channels_last (the fastest layout on the CPUs measured).
    Afterwards the accuracy on the MNIST test set is measured and stored with the weights, together
    with ``command``, the wall time and the machine. Returns (model in eval mode, info dict).
    """
    from . import data

    t0 = time.perf_counter()
    described = "mnist: the 60,000 training digits; accuracy on the 10,000 test digits"
    if train_data is not None or test_data is not None:
        described = "custom training and/or test data (not the shipped recipe)"
    train_data = train_data or data.mnist(train=True)
    images, labels = train_data.tensors
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = EvaluatorNet().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                                pct_start=0.2)
    bar = tqdm(total=epochs * steps_per_epoch, disable=not progress, desc="train evaluator", dynamic_ncols=True)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(labels), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x, y = images[idx], labels[idx]
            if augment:
                x = random_affine(x, g)
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            if i % 20 == 0:
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    acc = test_accuracy(model, test_data)
    wall_s = time.perf_counter() - t0
    info = {
        "kind": EVALUATOR_KIND,
        "command": command or f"python -c 'minicfg.evaluator.train_evaluator(epochs={epochs}, seed={seed})'",
        "recipe": {"epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
                   "weight_decay": weight_decay, "augment": augment, "optimizer": "AdamW",
                   "schedule": "OneCycleLR(pct_start=0.2)", "dtype": "float32", "memory_format": "channels_last"},
        "test_accuracy": round(acc, 5),
        "wall_time_s": round(wall_s, 1),
        "machine": f"{_cpu_name()}: {os.cpu_count()} CPU cores, torch using {torch.get_num_threads()} thread(s)",
        "torch": torch.__version__,
        "dataset": described,
    }
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(out_path, model.to(memory_format=torch.contiguous_format), info)
    return model, info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


# -- loading --------------------------------------------------------------------------------------
_LOADED: dict[str, tuple[EvaluatorNet, dict]] = {}


def load_evaluator(path=None) -> tuple[EvaluatorNet, dict]:
    """Load an evaluator (the shipped one if ``path`` is None): (model in eval mode, metadata).

    Reads through :func:`minicfg.checkpoint.load_tensors`, so a missing, truncated or foreign file gives
    a :class:`~minicfg.checkpoint.CheckpointError` naming the problem. The shipped evaluator is loaded
    once per process and then shared (callers must not train it).
    """
    if path is None:
        path = SHIPPED_EVALUATOR
        if not path.is_file():
            raise CheckpointError(
                f"the shipped evaluator weights are missing from {path}; reinstall minicfg, or make them with "
                f"`minicfg train-evaluator --out {path}`"
            )
    path = Path(path)
    key = None
    if path.is_file():
        st = path.stat()
        key = f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}"
        if key in _LOADED:
            return _LOADED[key]
    tensors, meta = load_tensors(path)
    if meta.get("kind") != EVALUATOR_KIND or "model" not in meta:
        raise CheckpointError(
            f"{path} is not an evaluator checkpoint (kind {meta.get('kind')!r}); a diffusion model loads with "
            f"`minicfg.checkpoint.load_model`, an evaluator is made with `minicfg train-evaluator`"
        )
    try:
        model = EvaluatorNet(EvaluatorConfig(**meta["model"]))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad evaluator config ({err})") from err
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise CheckpointError(f"{path} does not match its evaluator config: {' '.join(first[:3])}") from err
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path} holds non-finite weights (e.g. {bad[:3]})")
    model = model.to(memory_format=torch.channels_last).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.fingerprint = fingerprint(model)
    if key is not None:
        _LOADED[key] = (model, meta)
    return model, meta
