"""Guidance beyond the paper's Eq. 6: one-line variants of CFG, each a guidance-registry entry.

Each builder has the registry's signature ``builder(model, labels, w, **options) -> eps_fn(z, lam)`` and has a
record in :data:`minicfg.guidance.GUIDANCE`, so ``generate(..., guidance=NAME)``, ``minicfg sample
--guidance NAME`` and ``minicfg sweep --guidance NAME`` offer it; ``w = 0`` is always the plain conditional
model. The algebra is derived in :mod:`derivations.guidance_variants`. Built on :mod:`minicfg.guidance_formulas`;
the registry imports this module, never the other way round.

- ``interval``: CFG only while lam lies inside ``[lam_low, lam_high]``, the conditional model outside
  (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval improves sample and distribution quality
  in diffusion models"). They find guidance harmful at high noise (it commits every sample to the same few
  modes before their shapes exist) and nearly useless at low noise (the class is already decided).
- ``rescale``: CFG whose x-prediction is rescaled to the standard deviation of the conditional one, mixed in
  with factor ``phi`` (Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed", Sec. 3.4).
- ``autoguidance``: both predictions conditional, the weaker one from a smaller, shorter-trained network,
  ``eps~ = (1 + w) eps(z, c) - w eps_weak(z, c)`` (Karras et al. 2024, "Guiding a diffusion model with a bad
  version of itself").
"""

from __future__ import annotations

import math

import torch

from ._checks import check_w_spec
from .diffusion import expand_lam
from .guidance_formulas import _cond_and_uncond, _is_all, _num_classes, _w_at, _w_like, cfg, cfg_eps_fn
from .schedules import alpha_sigma

__all__ = ["interval_guidance", "rescale_guidance", "rescale_eps", "autoguidance", "lam_from_ve_sigma",
           "INTERVAL_EDM2"]


def lam_from_ve_sigma(sigma_ve: float) -> float:
    """The log-SNR of a variance-exploding noise level: ``z / alpha = x + (sigma / alpha) eps``, so the VE sigma
    of EDM is ``sigma / alpha = exp(-lam / 2)`` and ``lam = -2 log sigma_VE`` (``derivations.guidance_variants``)."""
    if not sigma_ve > 0:
        raise ValueError(f"a VE noise level must be positive, got {sigma_ve}")
    return -2.0 * math.log(sigma_ve)


#: Kynkäänniemi et al.'s FID-optimal interval for EDM2-XXL on ImageNet-512 guides steps 17-22 of EDM's 32-step
#: schedule (rho = 7, sigma from 80 to 0.002), i.e. VE sigma from 1.61 down to 0.283: lam in [-0.95, 2.52].
INTERVAL_EDM2 = (round(lam_from_ve_sigma(1.609), 2), round(lam_from_ve_sigma(0.283), 2))


def interval_guidance(model, labels: torch.Tensor, w, *, lam_low: float = INTERVAL_EDM2[0],
                      lam_high: float = INTERVAL_EDM2[1]) -> callable:
    """CFG (Eq. 6) for lam in ``[lam_low, lam_high]``, the conditional model (w = 0) outside it.

    The default is Kynkäänniemi et al.'s interval for EDM2 translated to log-SNR (:data:`INTERVAL_EDM2`,
    lam in [-0.95, 2.52]); ``lam_low > lam_high`` is refused, and an interval that holds no lam of the sampling
    grid gives the conditional model exactly. Steps outside the interval cost one network pass instead of two.
    """
    lam_low, lam_high = float(lam_low), float(lam_high)
    if math.isnan(lam_low) or math.isnan(lam_high) or lam_low > lam_high:
        raise ValueError(f"need lam_low <= lam_high (log-SNRs; -inf and inf allowed), got {lam_low}, {lam_high}")
    check_w_spec(w)

    def w_of_lam(lam: torch.Tensor) -> torch.Tensor:
        inside = (lam >= lam_low) & (lam <= lam_high)
        w_now = torch.as_tensor(_w_at(w, lam), dtype=lam.dtype, device=lam.device)
        return torch.where(inside, w_now, torch.zeros((), dtype=lam.dtype, device=lam.device))

    return cfg_eps_fn(model, labels, w_of_lam)


def _std(x: torch.Tensor) -> torch.Tensor:
    """Standard deviation of each sample over all its other dimensions, shaped to broadcast over ``x``."""
    return x.flatten(1).std(dim=1).reshape((-1,) + (1,) * (x.ndim - 1))


def rescale_eps(z: torch.Tensor, lam, eps_cond: torch.Tensor, eps_guided: torch.Tensor, phi: float,
                space: str = "x") -> torch.Tensor:
    """Lin et al.'s rescaled guidance as an eps: ``pred = phi * pred_cfg * std(pred_c) / std(pred_cfg) +
    (1 - phi) * pred_cfg``, with ``pred`` the x-prediction (``space="x"``) or the eps itself (``space="eps"``).

    In x space the change is carried back to eps exactly, ``eps - eps_cfg = -(alpha / sigma) (x - x_cfg)``
    (``derivations.guidance_variants``), so no x is converted back through a cancelling subtraction.
    """
    if space == "eps":
        guided, cond = eps_guided, eps_cond
    else:
        alpha, sigma = alpha_sigma(expand_lam(lam, z))
        guided, cond = (z - sigma * eps_guided) / alpha, (z - sigma * eps_cond) / alpha
    std_g, std_c = _std(guided), _std(cond)
    ratio = torch.where(std_g > 0, std_c / std_g.clamp_min(torch.finfo(std_g.dtype).tiny), torch.ones_like(std_g))
    change = phi * (ratio - 1) * guided  # rescaled-and-mixed prediction minus the CFG prediction
    return eps_guided + change if space == "eps" else eps_guided - (alpha / sigma) * change


def rescale_guidance(model, labels: torch.Tensor, w, *, phi: float = 0.7, space: str = "x") -> callable:
    """CFG (Eq. 6) with the guided prediction's standard deviation pulled back to the conditional one's
    (Lin et al. 2023, Sec. 3.4; ``phi = 0.7`` is their recommended mix, ``phi = 0`` is plain CFG).

    ``space="x"`` (default) rescales the predicted image, where the over-exposure they correct lives; ``"eps"``
    rescales the network's eps output instead, as some libraries apply it.
    """
    phi = float(phi)
    if not (0.0 <= phi <= 1.0):
        raise ValueError(f"phi mixes the rescaled and the plain CFG prediction and must lie in [0, 1], got {phi}")
    if space not in ("x", "eps"):
        raise ValueError(f"space must be 'x' (the predicted image) or 'eps' (the predicted noise), got {space!r}")
    num_classes = _num_classes(model)
    plain = cfg_eps_fn(model, labels, w, num_classes)
    null = torch.full_like(labels, num_classes)

    def eps_fn(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        w_now = _w_at(w, lam)
        if _is_all(w_now, 0.0) or _is_all(w_now, -1.0) or phi == 0.0:
            return plain(z, lam)
        eps_cond, eps_uncond = _cond_and_uncond(model, z, lam, labels, null)
        return rescale_eps(z, lam, eps_cond, cfg(eps_cond, eps_uncond, w_now), phi, space)

    return eps_fn


def autoguidance(model, labels: torch.Tensor, w, *, weak=None) -> callable:
    """Autoguidance (Karras et al. 2024): ``eps~ = (1 + w) eps(z, c) - w eps_weak(z, c)``, both conditional.

    ``weak`` is a worse model of the same data (fewer channels, fewer training steps; the shipped one is
    ``minicfg train --preset weak``). Where the weak model errs like the main one, only more, the difference
    points away from its errors without CFG's pull toward class prototypes. With the main model's own
    unconditional prediction as ``weak`` it is exactly CFG.
    """
    if weak is None:
        raise ValueError("guidance 'autoguidance' needs a weak model (weak=...; `minicfg train --preset weak`)")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    main_config, weak_config = getattr(model, "config", None), getattr(weak, "config", None)
    if main_config is not None and weak_config is not None:
        for key in ("num_classes", "image_channels", "image_size"):
            mine, theirs = getattr(main_config, key, None), getattr(weak_config, key, None)
            if mine != theirs:
                raise ValueError(f"the weak model must model the same data: its {key} is {theirs}, the main model's "
                                 f"{mine}")
    cond = cfg_eps_fn(model, labels, 0.0)
    weak_cond = cfg_eps_fn(weak, labels, 0.0, _num_classes(model))

    def eps_fn(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        w_now = _w_at(w, lam)
        eps = cond(z, lam)
        if _is_all(w_now, 0.0):
            return eps
        w_now = _w_like(w_now, eps)
        return (1 + w_now) * eps - w_now * weak_cond(z, lam)

    return eps_fn
