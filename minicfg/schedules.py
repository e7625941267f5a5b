"""Noise schedules in log-SNR time (Ho & Salimans 2022, Sec. 2; Kingma et al. 2021, VDM).

Time is the log signal-to-noise ratio ``lam = log(alpha^2 / sigma^2)`` of the variance-preserving
forward process, so ``alpha^2 = sigmoid(lam)`` and ``sigma^2 = sigmoid(-lam)``. Large ``lam`` is
data, small ``lam`` is noise; sampling walks ``lam`` upwards.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "alpha_sigma",
    "check_lam_range",
    "log_snr_cosine",
    "log_snr_uniform",
    "sampling_lams",
    "ddpm_log_snr",
    "SCHEDULES",
]


def check_lam_range(lam_min: float, lam_max: float) -> None:
    """Raise ValueError unless ``lam_min < lam_max`` are finite numbers."""
    if not (math.isfinite(lam_min) and math.isfinite(lam_max)):
        raise ValueError(f"lam_min and lam_max must be finite, got lam_min={lam_min}, lam_max={lam_max}")
    if lam_min >= lam_max:
        raise ValueError(
            f"lam_min must be smaller than lam_max (noise end < data end), got lam_min={lam_min}, "
            f"lam_max={lam_max}; for example lam_min=-20, lam_max=20"
        )


def _as_float(t) -> torch.Tensor:
    """A float tensor from a number, an integer tensor or a float tensor (kept as it is)."""
    t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not torch.is_tensor(t) else t
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    return t


def alpha_sigma(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal and noise scales of the forward process at log-SNR ``lam`` (paper Sec. 2).

    ``alpha^2 = sigmoid(lam)`` and ``sigma^2 = sigmoid(-lam)``, computed through ``logsigmoid`` so both
    stay accurate (no 0 or 1 round-off for the small one) for |lam| up to 30 and beyond in float32.

    Args:
        lam: log-SNR, any shape; a float is turned into a 0-d tensor.
    Returns:
        (alpha, sigma), each the shape of ``lam``.
    """
    lam = _as_float(lam)
    alpha = torch.exp(0.5 * torch.nn.functional.logsigmoid(lam))
    sigma = torch.exp(0.5 * torch.nn.functional.logsigmoid(-lam))
    return alpha, sigma


def log_snr_cosine(u, lam_min: float = -20.0, lam_max: float = 20.0) -> torch.Tensor:
    """The truncated cosine schedule as a log-SNR: ``lam(u) = -2 log tan(a u + b)`` (paper Sec. 2).

    ``b = arctan(exp(-lam_max / 2))`` and ``a = arctan(exp(-lam_min / 2)) - b``, so ``u = 0`` gives
    ``lam_max`` and ``u = 1`` gives ``lam_min``. With ``u`` uniform on [0, 1] it is the distribution of
    training noise levels the paper uses ("hyperbolic secant" density over lam, truncated).

    Args:
        u: values in [0, 1], any shape.
    """
    check_lam_range(lam_min, lam_max)
    u = _as_float(u)
    b = math.atan(math.exp(-lam_max / 2))
    a = math.atan(math.exp(-lam_min / 2)) - b
    # compute in float64: tan near pi/2 loses precision in float32 for lam_min far below 0
    lam = -2.0 * torch.log(torch.tan(a * u.double() + b))
    return lam.to(u.dtype)


def log_snr_uniform(u, lam_min: float = -20.0, lam_max: float = 20.0) -> torch.Tensor:
    """Log-SNR linear in ``u``: ``lam(u) = lam_max + u (lam_min - lam_max)``; u=0 is data, u=1 noise."""
    check_lam_range(lam_min, lam_max)
    u = _as_float(u)
    return lam_max + u * (lam_min - lam_max)


SCHEDULES = {"cosine": log_snr_cosine, "uniform": log_snr_uniform}


def sampling_lams(
    n_steps: int,
    lam_min: float = -20.0,
    lam_max: float = 20.0,
    schedule: str = "cosine",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """An increasing grid of ``n_steps + 1`` log-SNRs from ``lam_min`` (noise) to ``lam_max`` (data).

    The grid is the schedule evaluated at ``u = 1, (n-1)/n, ..., 0``, so samplers take ``n_steps``
    steps, evenly spaced in ``u`` (paper Sec. 4: "spaced uniformly in time").
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
    u = torch.linspace(1.0, 0.0, n_steps + 1, dtype=torch.float64)
    return SCHEDULES[schedule](u, lam_min, lam_max).to(dtype)


def ddpm_log_snr(
    n_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, dtype=torch.float32
) -> torch.Tensor:
    """DDPM's linear beta schedule (Ho et al. 2020) written as log-SNRs, one per timestep t = 1..T.

    ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` is DDPM's alpha^2, so ``lam_t = log(alpha_bar_t /
    (1 - alpha_bar_t))``: the discrete model is the continuous one observed at these T log-SNRs.
    The result decreases with t (t = 1 is nearly clean, t = T nearly pure noise).
    """
    if n_timesteps < 1 or not (0 < beta_start < beta_end < 1):
        raise ValueError(
            f"need n_timesteps >= 1 and 0 < beta_start < beta_end < 1, got {n_timesteps}, "
            f"{beta_start}, {beta_end}"
        )
    betas = torch.linspace(beta_start, beta_end, n_timesteps, dtype=torch.float64)
    log_alpha_bar = torch.cumsum(torch.log1p(-betas), 0)
    # log(ab / (1 - ab)) = log ab - log(-expm1(log ab))
    lam = log_alpha_bar - torch.log(-torch.expm1(log_alpha_bar))
    return lam.to(dtype)
