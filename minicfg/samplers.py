"""Samplers: functions of an eps-callable ``eps_fn(z, lam)`` that walk lam upwards (k-diffusion style).

``eps_fn`` takes ``z`` of shape (B, ...) and ``lam`` of shape (B,) and returns eps of the shape of
``z``: an exact score, a network, or a guided combination plug in alike. ``lams`` is an increasing
grid from the noise end to the data end, such as :func:`minicfg.schedules.sampling_lams`.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from .diffusion import eps_from_x, posterior, reverse_variance, x_from_eps
from .schedules import alpha_sigma

__all__ = ["check_lams", "ancestral", "ddim"]


def check_lams(lams: torch.Tensor) -> torch.Tensor:
    """Validate a sampling grid: 1-D, at least 2 finite values, strictly increasing."""
    lams = torch.as_tensor(lams)
    if lams.ndim != 1 or lams.numel() < 2:
        raise ValueError(f"lams must be a 1-D grid of at least 2 log-SNRs, got shape {tuple(lams.shape)}")
    if not bool(torch.isfinite(lams).all()):
        raise ValueError("lams must be finite")
    if not bool((lams[1:] > lams[:-1]).all()):
        raise ValueError(
            "lams must be strictly increasing: sampling walks the log-SNR up from noise (lam_min) to data "
            "(lam_max); use minicfg.schedules.sampling_lams(n_steps)"
        )
    return lams


def _predict(eps_fn, z: torch.Tensor, lam: torch.Tensor, clip_x):
    """Run the model at one lam; return (x prediction, eps), both consistent with the clipping."""
    lam_b = lam.expand(z.shape[0])
    eps = eps_fn(z, lam_b)
    if eps.shape != z.shape:
        raise ValueError(f"eps_fn returned shape {tuple(eps.shape)} for z of shape {tuple(z.shape)}")
    eps = eps.to(z.dtype)
    x = x_from_eps(z, lam_b, eps)
    if clip_x is not None:
        x = x.clamp(*clip_x)
        eps = eps_from_x(z, lam_b, x)
    return x, eps


def ancestral(
    eps_fn,
    z: torch.Tensor,
    lams: torch.Tensor,
    v: float = 0.3,
    clip_x: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    noise_scale: float = 1.0,
) -> torch.Tensor:
    """The paper's ancestral sampler (Ho & Salimans 2022, Alg. 2).

    At each ``lam`` in the grid the model predicts ``x~ = (z - sigma eps~) / alpha`` (optionally clipped to
    ``clip_x``, e.g. (-1, 1) for images); ``z`` moves to the next ``lam'`` by drawing from
    ``N(mu~_{lam'|lam}(z, x~), (sigma~^2)^(1-v) (sigma^2_{lam|lam'})^v)``. After the last step, as in
    Alg. 2, the final prediction ``x~`` is returned. ``len(lams) - 1`` network evaluations.

    Args:
        eps_fn: ``eps_fn(z, lam) -> eps``.
        z: starting noise at ``lams[0]``, shape (B, ...), usually ``torch.randn``.
        lams: increasing grid of log-SNRs.
        v: variance interpolation, 0 = posterior variance, 1 = forward variance (paper: 0.3).
        clip_x: optional (low, high) range for the x prediction.
        generator: torch.Generator for the noise (reproducible sampling).
        progress: show a tqdm bar.
        noise_scale: multiplies the fresh noise of each step. 1 is the paper's sampler; below 1 is the naive
            "low-temperature" sampling that the paper (Sec. 1) contrasts with guidance.
    """
    if not 0.0 <= float(noise_scale) <= 1.0:
        raise ValueError(f"noise_scale must lie in [0, 1] (1 = the paper's sampler), got {noise_scale}")
    lams = check_lams(lams).to(device=z.device, dtype=z.dtype)
    x = z
    n = lams.numel() - 1
    for i in tqdm(range(n), disable=not progress, desc="ancestral", leave=False):
        lam, lam_next = lams[i], lams[i + 1]
        x, _ = _predict(eps_fn, z, lam, clip_x)
        if i == n - 1:
            break
        mean, _ = posterior(z, x, lam, lam_next)
        std = reverse_variance(lam, lam_next, v).sqrt()
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        z = mean + noise_scale * std * noise
    return x


def ddim(
    eps_fn,
    z: torch.Tensor,
    lams: torch.Tensor,
    clip_x: tuple[float, float] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """The deterministic DDIM sampler (Song et al. 2021) in log-SNR time.

    ``z_lam' = alpha_lam' x~ + sigma_lam' eps~``: the probability-flow step that keeps the predicted
    noise; returns the final prediction ``x~`` like :func:`ancestral`.
    """
    lams = check_lams(lams).to(device=z.device, dtype=z.dtype)
    x = z
    n = lams.numel() - 1
    for i in tqdm(range(n), disable=not progress, desc="ddim", leave=False):
        x, eps = _predict(eps_fn, z, lams[i], clip_x)
        if i == n - 1:
            break
        alpha_next, sigma_next = alpha_sigma(lams[i + 1])
        z = alpha_next * x + sigma_next * eps
    return x
