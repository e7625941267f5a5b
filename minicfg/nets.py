"""Networks: the diffusion model ``model(z, lam, labels) -> eps`` (labels use the null index ``num_classes``),
the noisy classifier ``classifier(z, lam) -> logits`` and the evaluation classifier ``evaluator(x) -> logits``.

``UNet`` is a small conditional U-Net built for CPU speed: the input is folded into 2x2 patches
(space-to-depth) so the first level already works at half resolution, every residual block is
FiLM-conditioned on an embedding of ``lam`` plus the label, and the output is unfolded back. The
choices were measured, see ``docs/speed.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .diffusion import expand_lam
from .predictions import _check_sigma_data, get_prediction

__all__ = ["UNetConfig", "UNet", "NoisyClassifierConfig", "NoisyClassifier", "EvaluatorConfig", "EvaluatorNet",
           "CifarEvaluatorConfig", "CifarEvaluatorNet", "lam_embedding", "build_model", "ARCHITECTURES"]


def lam_embedding(lam: torch.Tensor, dim: int, max_period: float = 1e3) -> torch.Tensor:
    """Sinusoidal features of the log-SNR: sin/cos of ``lam`` at ``dim // 2`` frequencies.

    ``lam`` spans about [-20, 20]; frequencies range from 1 down to ``1 / max_period`` per unit lam.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=lam.device, dtype=torch.float32) / half)
    args = lam.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return emb.to(lam.dtype) if lam.is_floating_point() else emb


class _ArchConfig:
    """What every architecture config shares: channel widths as a tuple, and a JSON-ready dict."""

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UNetConfig(_ArchConfig):
    """Architecture of :class:`UNet`; stored in every checkpoint's JSON config."""

    image_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    channels: tuple[int, ...] = (64, 128)
    blocks_per_level: int = 1
    mid_blocks: int = 1
    attention_heads: int = 0
    patch: int = 2
    emb_dim: int = 128
    groups: int = 8
    prediction: str = "eps"
    sigma_data: float = 0.5
    #: a guidance-distilled student (Meng et al. 2023) has the range of w it was distilled for, (w_min, w_max), and
    #: takes w as a fourth input; None for every other diffusion model
    guidance_range: tuple[float, float] | None = None
    arch: str = field(default="unet", init=False)

    def __post_init__(self):
        super().__post_init__()
        get_prediction(self.prediction)
        _check_sigma_data(self.sigma_data)
        if self.attention_heads < 0 or (self.attention_heads and self.channels[-1] % self.attention_heads):
            raise ValueError(f"attention_heads must be 0 (no attention) or divide the lowest level's "
                             f"{self.channels[-1]} channels, got {self.attention_heads}")
        if self.guidance_range is not None:
            lo, hi = (float(v) for v in self.guidance_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"guidance_range must be (w_min, w_max) with w_min < w_max, got {self.guidance_range}")
            self.guidance_range = (lo, hi)
        if self.image_size % (self.patch * 2 ** (len(self.channels) - 1)):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by patch * 2^(levels-1) = "
                f"{self.patch * 2 ** (len(self.channels) - 1)}"
            )


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a FiLM (scale, shift) from the conditioning embedding."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over the pixels of a feature map, added to it (torch's
    ``nn.MultiheadAttention``); the output projection starts at zero, so the block starts as the identity."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    """Conditional U-Net: ``forward(z, lam, labels) -> eps`` of the shape of ``z``, whatever the network
    predicts inside (``config.prediction``: eps, v or EDM-preconditioned, see ``minicfg.predictions``);
    ``raw(z, lam, labels)`` is the network's own output, which the training loss compares.

    With ``config.guidance_range`` the network is a guidance-distilled student (Meng et al. 2023, stage one) and
    takes the guidance strength as a fourth input, ``forward(z, lam, labels, w)``: ``w`` (a number or one per
    sample) is embedded like ``lam`` and added to the conditioning through its own MLP, whose last layer starts at
    zero, so a student initialised from its teacher starts as the teacher's conditional prediction (w = 0)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c = config
        e = c.emb_dim
        self.lam_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.label_emb = nn.Embedding(c.num_classes + 1, e)
        if c.guidance_range is not None:
            self.w_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
            nn.init.zeros_(self.w_mlp[2].weight)
            nn.init.zeros_(self.w_mlp[2].bias)
        self.emb_act = nn.SiLU()
        self.stem = nn.Conv2d(c.image_channels * c.patch**2, c.channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = c.channels[0]
        skips = []
        for i, width in enumerate(c.channels):
            blocks = nn.ModuleList()
            for _ in range(c.blocks_per_level):
                blocks.append(ResBlock(ch, width, e, c.groups))
                ch = width
            self.down.append(blocks)
            skips.append(ch)
            if i < len(c.channels) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(ch, ch, e, c.groups) for _ in range(c.mid_blocks)])
        # attention_heads > 0: self-attention at the lowest resolution, after the first middle block
        self.mid_attention = SelfAttention(ch, c.attention_heads, c.groups) if c.attention_heads else None
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, width in reversed(list(enumerate(c.channels))):
            blocks = nn.ModuleList()
            for j in range(c.blocks_per_level):
                blocks.append(ResBlock(ch + (skips[i] if j == 0 else 0), width, e, c.groups))
                ch = width
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, c.channels[i - 1], 3, padding=1))
                ch = c.channels[i - 1]
        self.out_norm = nn.GroupNorm(min(c.groups, ch), ch)
        self.out = nn.Conv2d(ch, c.image_channels * c.patch**2, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed(self, lam: torch.Tensor, labels: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        e = self.config.emb_dim
        emb = self.lam_mlp(lam_embedding(lam, e)) + self.label_emb(labels)
        if w is not None:
            emb = emb + self.w_mlp(lam_embedding(w.to(lam.dtype), e))
        return self.emb_act(emb)

    def forward(self, z: torch.Tensor, lam: torch.Tensor, labels: torch.Tensor, w=None) -> torch.Tensor:
        c = self.config
        return get_prediction(c.prediction).to_eps(self.raw(z, lam, labels, w).float(), z.float(),
                                                   expand_lam(lam, z).float(), c.sigma_data).to(z.dtype)

    def _check_w(self, w, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        if self.config.guidance_range is None:
            if w is not None:
                raise ValueError("this network has no guidance input (it is not a distilled student): call it as "
                                 "model(z, lam, labels) and guide it with a guidance method")
            return None
        if w is None:
            raise ValueError("this network is a guidance-distilled student and takes the guidance strength: call it "
                             "as model(z, lam, labels, w), or sample with the guidance method of minicfg.distill")
        w = torch.as_tensor(w, dtype=torch.float32, device=like.device)
        if w.ndim == 0:
            w = w.expand(batch)
        if w.shape != (batch,) or not bool(torch.isfinite(w).all()):
            raise ValueError(f"need w as a finite number or one per sample, shape ({batch},), got {tuple(w.shape)}")
        return w

    def raw(self, z: torch.Tensor, lam: torch.Tensor, labels: torch.Tensor, w=None) -> torch.Tensor:
        c = self.config
        expected = (c.image_channels, c.image_size, c.image_size)
        if z.ndim != 4 or tuple(z.shape[1:]) != expected:
            raise ValueError(f"UNet expects z of shape (B, {', '.join(map(str, expected))}), got {tuple(z.shape)}")
        if lam.shape != (z.shape[0],) or labels.shape != (z.shape[0],):
            raise ValueError(
                f"need lam and labels of shape ({z.shape[0]},), got {tuple(lam.shape)} and {tuple(labels.shape)}"
            )
        emb = self.embed(lam, labels, self._check_w(w, z.shape[0], lam))
        z = z * get_prediction(c.prediction).c_in(expand_lam(lam, z), c.sigma_data).to(z.dtype)
        h = F.pixel_unshuffle(z, c.patch) if c.patch > 1 else z
        h = self.stem(h)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for j, block in enumerate(self.mid):
            h = block(h, emb)
            if j == 0 and self.mid_attention is not None:
                h = self.mid_attention(h)
        for k, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if k < len(self.upsample):
                h = F.interpolate(h, scale_factor=2, mode="nearest")
                h = self.upsample[k](h)
        h = self.out(F.silu(self.out_norm(h)))
        out = F.pixel_shuffle(h, c.patch) if c.patch > 1 else h
        return out.to(z.dtype)


@dataclass
class NoisyClassifierConfig(_ArchConfig):
    """Architecture of :class:`NoisyClassifier`, the p(c | z_lam) of classifier guidance."""

    image_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    channels: tuple[int, ...] = (32, 64)
    blocks_per_level: int = 1
    patch: int = 2
    emb_dim: int = 64
    groups: int = 8
    arch: str = field(default="noisy_classifier", init=False)


class NoisyClassifier(nn.Module):
    """A classifier of noisy images, ``forward(z, lam) -> logits`` (Dhariwal & Nichol 2021, Sec. 4).

    The U-Net's encoder half: FiLM residual blocks conditioned on the log-SNR only (never the label),
    then global average pooling and a linear layer. Trained on ``z_lam`` at the log-SNRs the diffusion
    model sees (``diffusion.classifier_loss``), because guidance asks for ``grad log p(c | z_lam)`` at
    every noise level, not only on clean images.
    """

    def __init__(self, config: NoisyClassifierConfig):
        super().__init__()
        self.config = c = config
        e = c.emb_dim
        self.lam_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU())
        self.stem = nn.Conv2d(c.image_channels * c.patch**2, c.channels[0], 3, padding=1)
        layers: list[nn.Module] = []
        ch = c.channels[0]
        for i, width in enumerate(c.channels):
            for _ in range(c.blocks_per_level):
                layers.append(ResBlock(ch, width, e, c.groups))
                ch = width
            if i < len(c.channels) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.blocks = nn.ModuleList(layers)
        self.out_norm = nn.GroupNorm(min(c.groups, ch), ch)
        self.head = nn.Linear(ch, c.num_classes)

    def forward(self, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        c = self.config
        expected = (c.image_channels, c.image_size, c.image_size)
        if z.ndim != 4 or tuple(z.shape[1:]) != expected or lam.shape != (z.shape[0],):
            raise ValueError(
                f"NoisyClassifier expects z of shape (B, {', '.join(map(str, expected))}) and lam of shape (B,), "
                f"got {tuple(z.shape)} and {tuple(lam.shape)}"
            )
        emb = self.lam_mlp(lam_embedding(lam, c.emb_dim))
        h = self.stem(F.pixel_unshuffle(z, c.patch) if c.patch > 1 else z)
        for layer in self.blocks:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        h = F.silu(self.out_norm(h)).mean(dim=(2, 3))
        return self.head(h)


@dataclass
class EvaluatorConfig(_ArchConfig):
    """Architecture of :class:`EvaluatorNet`, the clean-image classifier behind the offline metrics."""

    image_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    channels: tuple[int, ...] = (16, 32, 32, 64)
    feature_dim: int = 128
    dropout: float = 0.3
    arch: str = field(default="evaluator", init=False)

    def __post_init__(self):
        super().__post_init__()
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"channels must be 4 positive integers, got {self.channels}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 (three 2x poolings), got {self.image_size}")


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class EvaluatorNet(nn.Module):
    """Small CNN of clean images: ``forward(x) -> logits`` and ``features(x) -> (N, feature_dim)``.

    Not the noisy classifier of classifier guidance: it sees only clean images and only scores samples
    (``minicfg.metrics``). conv, conv, pool, conv, pool, conv, pool (28x28 -> 3x3, 32x32 -> 4x4), then a
    linear feature layer (ReLU), dropout and a linear layer to the logits; 108k parameters for MNIST.
    """

    def __init__(self, config: EvaluatorConfig | None = None):
        super().__init__()
        self.config = c = config or EvaluatorConfig()
        c1, c2, c3, c4 = c.channels
        self.body = nn.Sequential(
            _conv_bn(c.image_channels, c1), _conv_bn(c1, c2), nn.MaxPool2d(2),
            _conv_bn(c2, c3), nn.MaxPool2d(2),
            _conv_bn(c3, c4), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        side = c.image_size // 2 // 2 // 2
        self.fc = nn.Linear(c4 * side * side, c.feature_dim)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.feature_dim, c.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (after ReLU, before dropout) of images in [-1, 1], shape (N, feature_dim)."""
        return F.relu(self.fc(self.body(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


@dataclass
class CifarEvaluatorConfig(_ArchConfig):
    """Architecture of :class:`CifarEvaluatorNet`, the evaluation classifier of 32x32 colour images."""

    image_channels: int = 3
    image_size: int = 32
    num_classes: int = 10
    stem: int = 32
    channels: tuple[int, ...] = (64, 256, 256)
    arch: str = field(default="cifar_evaluator", init=False)

    @property
    def feature_dim(self) -> int:
        return self.channels[-1]

    def __post_init__(self):
        super().__post_init__()
        if len(self.channels) != 3 or min(self.channels) < 1 or self.stem < 1:
            raise ValueError(f"need 3 positive channel widths and a positive stem, got {self.channels}, {self.stem}")
        if self.image_size % 8:
            raise ValueError(f"image_size must be divisible by 8 (three 2x poolings), got {self.image_size}")


def _pool_block(c_in: int, c_out: int) -> nn.Sequential:
    """conv, 2x max-pool, BN, GELU, conv, BN, GELU: one resolution of :class:`CifarEvaluatorNet`."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out),
                         nn.GELU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.GELU())


class CifarEvaluatorNet(nn.Module):
    """Clean-image classifier for CIFAR-10's metrics: ``forward(x) -> logits``, ``features(x) -> (N, channels[-1])``.

    A conv-BN-GELU stem, then three blocks of conv, 2x max-pool, BN, GELU, conv, BN, GELU (32 -> 16 -> 8 -> 4),
    global max-pooling to the features, and a linear layer to the logits: the shape of the fast CIFAR-10 nets
    of Keller Jordan's airbench, without its whitening initialisation. Trained with flips, 2-pixel translations
    and label smoothing (``minicfg.evaluator.cifar_evaluator_loss``).
    """

    def __init__(self, config: CifarEvaluatorConfig | None = None):
        super().__init__()
        self.config = c = config or CifarEvaluatorConfig()
        c1, c2, c3 = c.channels
        self.body = nn.Sequential(
            nn.Conv2d(c.image_channels, c.stem, 3, padding=1, bias=False), nn.BatchNorm2d(c.stem), nn.GELU(),
            _pool_block(c.stem, c1), _pool_block(c1, c2), _pool_block(c2, c3),
        )
        self.head = nn.Linear(c3, c.num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally max-pooled features of images in [-1, 1], shape (N, channels[-1])."""
        return self.body(x).amax(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


#: arch name (the ``arch`` field of every stored config) -> (config class, network class)
ARCHITECTURES = {"unet": (UNetConfig, UNet), "noisy_classifier": (NoisyClassifierConfig, NoisyClassifier),
                 "evaluator": (EvaluatorConfig, EvaluatorNet),
                 "cifar_evaluator": (CifarEvaluatorConfig, CifarEvaluatorNet)}
_LEGACY_ARCH = {"mnist-evaluator": "evaluator"}  # the name in the configs of weights made before the registry


def build_model(config: dict) -> nn.Module:
    """Build a network from a config dict (as stored in a checkpoint's JSON)."""
    config = dict(config)
    arch = config.pop("arch", "unet")
    arch = _LEGACY_ARCH.get(arch, arch)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    config_cls, model_cls = ARCHITECTURES[arch]
    try:
        config = config_cls(**config)
    except TypeError as err:
        raise ValueError(f"config does not fit architecture {arch!r}: {err}") from err
    return model_cls(config)
