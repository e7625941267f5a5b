"""Samplers: functions of an eps-callable ``eps_fn(z, lam)`` that walk lam upwards (k-diffusion style).

``eps_fn`` takes ``z`` of shape (B, ...) and ``lam`` of shape (B,) and returns eps of the shape of
``z``: an exact score, a network, or a guided combination plug in alike. ``lams`` is an increasing
grid from the noise end to the data end, such as :func:`minicfg.schedules.sampling_lams`.

Every sampler has one signature, ``sampler(eps_fn, z, lams, *, generator=None, callback=None,
**options)``, and returns the x-prediction of the last evaluated log-SNR (as the paper's Alg. 2). After
each network evaluation it calls ``callback(step, lam, z, x_pred)``: the step index, the log-SNR (0-d),
the state the network saw and its (clipped) x-prediction; trajectories, plots and progress bars hang
off this hook. Samplers are registered by name in :data:`SAMPLERS` with :func:`register_sampler`;
:func:`run_sampler` calls one by name and rejects options it does not take.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from ._checks import check_lams, check_options
from .diffusion import eps_from_x, posterior, reverse_variance, x_from_eps
from .schedules import alpha_sigma

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "PREVIEW_SAMPLER", "register_sampler", "get_sampler", "run_sampler",
           "ancestral", "ddim", "dpm_solver_2m"]

Sampler = Callable[..., torch.Tensor]

#: name -> sampler function, in registration order; `minicfg sample --sampler` offers these names.
SAMPLERS: dict[str, Sampler] = {}
_RESERVED = ("generator", "callback")
#: The sampler used when none is named (the paper's Alg. 2), and the deterministic one of training previews.
DEFAULT_SAMPLER = "ancestral"
PREVIEW_SAMPLER = "ddim"


def register_sampler(name: str):
    """Decorator: add a sampler with the standard signature to :data:`SAMPLERS` under ``name``."""

    def add(fn: Sampler) -> Sampler:
        if name in SAMPLERS:
            raise ValueError(f"a sampler named {name!r} is already registered")
        params = inspect.signature(fn).parameters
        missing = [p for p in _RESERVED if p not in params or params[p].kind is not inspect.Parameter.KEYWORD_ONLY]
        if list(params)[:3] != ["eps_fn", "z", "lams"] or missing:
            raise ValueError(f"sampler {name!r} must have the signature (eps_fn, z, lams, *, generator=None, "
                             f"callback=None, **options)")
        SAMPLERS[name] = fn
        return fn

    return add


def get_sampler(name: str) -> Sampler:
    """The sampler registered as ``name``; a ValueError lists the registered names."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {list(SAMPLERS)}")
    return SAMPLERS[name]


def run_sampler(name: str, eps_fn, z: torch.Tensor, lams: torch.Tensor, *, generator=None, callback=None,
                **options) -> torch.Tensor:
    """Run the sampler registered as ``name``; options it does not take are a ValueError naming its options."""
    fn = get_sampler(name)
    check_options("sampler", name, fn, options, _RESERVED)
    return fn(eps_fn, z, lams, generator=generator, callback=callback, **options)


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


def _walk(eps_fn, z: torch.Tensor, lams: torch.Tensor, clip_x, callback, step) -> torch.Tensor:
    """The loop every sampler shares: at each lam of the grid predict ``x~`` and ``eps~``, report them to
    ``callback``, and (except after the last evaluation) move ``z`` to the next lam with
    ``step(i, z, x~, eps~, lam, lam_next) -> z``. Returns the last ``x~``."""
    lams = check_lams(lams).to(device=z.device, dtype=z.dtype)
    x = z
    n = lams.numel() - 1
    for i in range(n):
        x, eps = _predict(eps_fn, z, lams[i], clip_x)
        if callback is not None:
            callback(i, lams[i], z, x)
        if i == n - 1:
            break
        z = step(i, z, x, eps, lams[i], lams[i + 1])
    return x


@register_sampler("ancestral")
def ancestral(
    eps_fn,
    z: torch.Tensor,
    lams: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    v: float = 0.3,
    clip_x: tuple[float, float] | None = None,
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
        generator: torch.Generator for the noise (reproducible sampling).
        callback: ``callback(step, lam, z, x_pred)`` after each network evaluation.
        v: variance interpolation, 0 = posterior variance, 1 = forward variance (paper: 0.3).
        clip_x: optional (low, high) range for the x prediction.
        noise_scale: multiplies the fresh noise of each step. 1 is the paper's sampler; below 1 is the naive
            "low-temperature" sampling that the paper (Sec. 1) contrasts with guidance.
    """
    if not 0.0 <= float(noise_scale) <= 1.0:
        raise ValueError(f"noise_scale must lie in [0, 1] (1 = the paper's sampler), got {noise_scale}")

    def step(i, z, x, eps, lam, lam_next):
        mean, _ = posterior(z, x, lam, lam_next)
        std = reverse_variance(lam, lam_next, v).sqrt()
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        return mean + noise_scale * std * noise

    return _walk(eps_fn, z, lams, clip_x, callback, step)


@register_sampler("ddim")
def ddim(
    eps_fn,
    z: torch.Tensor,
    lams: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    clip_x: tuple[float, float] | None = None,
) -> torch.Tensor:
    """The deterministic DDIM sampler (Song et al. 2021) in log-SNR time.

    ``z_lam' = alpha_lam' x~ + sigma_lam' eps~``: the probability-flow step that keeps the predicted
    noise; returns the final prediction ``x~`` like :func:`ancestral`. ``generator`` is accepted for the
    common signature and unused (nothing is random).
    """

    def step(i, z, x, eps, lam, lam_next):
        alpha_next, sigma_next = alpha_sigma(lam_next)
        return alpha_next * x + sigma_next * eps

    return _walk(eps_fn, z, lams, clip_x, callback, step)


@register_sampler("dpmpp_2m")
def dpm_solver_2m(
    eps_fn,
    z: torch.Tensor,
    lams: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    clip_x: tuple[float, float] | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): a second-order multistep solver of the probability-flow ODE.

    It integrates in the half log-SNR ``lam / 2 = log(alpha / sigma)`` on the data prediction ``x~``:
    ``z' = (sigma' / sigma) z - alpha' (exp(-h) - 1) D`` with ``h = (lam' - lam) / 2``, where ``D = x~`` on
    the first step and afterwards the extrapolation ``(1 + 1/(2r)) x~ - 1/(2r) x~_prev`` with ``r`` the
    ratio of the previous step to this one. One network evaluation per step, like DDIM (its first-order
    special case), and deterministic (``generator`` is unused). Returns the final prediction ``x~``.
    """
    previous = []  # (x~, h) of the step before

    def step(i, z, x, eps, lam, lam_next):
        h = (lam_next - lam) / 2
        _, sigma = alpha_sigma(lam)
        alpha_next, sigma_next = alpha_sigma(lam_next)
        if previous:
            x_prev, h_prev = previous.pop()
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x - (1 / (2 * r)) * x_prev
        else:
            d = x
        previous.append((x, h))
        return (sigma_next / sigma) * z - alpha_next * torch.expm1(-h) * d

    return _walk(eps_fn, z, lams, clip_x, callback, step)
