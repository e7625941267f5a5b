"""What the network's output means: eps, v or EDM-preconditioned, turned into an eps in one place.

The paper (Ho & Salimans 2022, Alg. 1) trains ``eps_theta``. Near pure noise that is ill-conditioned:
the data prediction ``x = (z - sigma eps) / alpha`` multiplies any eps error by ``sigma / alpha``, about
22,000 at ``lam = -20``, which is why eps-trained samplers clip x. Two well-conditioned alternatives:

- ``v`` (Salimans & Ho 2022, Sec. 4): the net predicts ``v = alpha eps - sigma x``; then
  ``x = alpha z - sigma v`` and ``eps = sigma z + alpha v``, bounded at both ends of the lam range.
- ``edm`` (Karras et al. 2022, Table 1, written in log-SNR time): with the data's standard deviation
  ``d`` and ``r = sqrt(sigma^2 + d^2 alpha^2)``, the net sees ``z / r`` (c_in), and
  ``x = (d^2 alpha / r^2) z + (sigma d / r) F`` (c_skip, c_out). ``d = 1`` is ``v`` with ``F = -v``.

Every :class:`Prediction` gives ``c_in``, ``to_eps`` (used by ``nets.UNet.forward``, so guidance,
samplers and metrics only ever see an eps) and ``target`` (what the loss compares the raw output with),
plus ``eps_mse_factor``: the raw squared error per unit of squared eps error, so that a weighting of
the loss over lam can be stated once, in eps units, for every prediction. The identities are derived
in ``derivations/predictions.py`` and tied to this code by ``tests/test_predictions.py``.

Loss weightings over lam (:data:`WEIGHTINGS`, all as a factor on the eps-space squared error):
``"none"`` keeps each prediction's own unweighted loss; ``"min_snr"`` is Min-SNR-gamma (Hang et al.
2023), ``min(SNR, gamma) / SNR``; ``"sigmoid"`` is ``sigmoid(b - lam)`` (Kingma & Gao 2023).
Training noise-level densities (:data:`DENSITIES`): ``"cosine"`` (the paper's) and ``"lognormal"``
(EDM's normal density on ``log sigma_edm = -lam / 2``), both truncated to [lam_min, lam_max].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .diffusion import drop_labels, expand_lam, q_sample
from .registry import Registry
from .schedules import alpha_sigma, check_lam_range, log_snr_cosine

__all__ = ["Prediction", "PREDICTIONS", "register_prediction", "get_prediction", "WEIGHTINGS", "DENSITIES",
           "sample_lams", "loss_weight", "prediction_loss"]


@dataclass(frozen=True)
class Prediction:
    """One output parameterisation; every function takes ``lam`` already broadcast over ``z`` and ``d``,
    the data's standard deviation (used by ``edm`` only)."""

    c_in: object  # (lam, d) -> factor on z at the network's input
    to_eps: object  # (out, z, lam, d) -> eps
    target: object  # (x, eps, lam, d) -> what the raw output should be
    eps_mse_factor: object  # (lam, d) -> |out - target|^2 / |eps_hat - eps|^2


def _r(lam, d):
    alpha, sigma = alpha_sigma(lam)
    return torch.sqrt(sigma**2 + (d * alpha) ** 2)


def _one(lam, d):
    return torch.ones_like(lam)


def _check_prediction(name: str, prediction) -> None:
    if not isinstance(prediction, Prediction):
        raise ValueError(f"prediction {name!r} must be a Prediction(c_in, to_eps, target, eps_mse_factor), "
                         f"got {prediction!r}")


#: name -> :class:`Prediction`, in registration order; ``UNetConfig(prediction=NAME)`` names one.
PREDICTIONS = Registry("prediction", _check_prediction)


def register_prediction(name: str, prediction: Prediction) -> Prediction:
    """Add an output parameterisation under ``name`` (then ``UNetConfig(prediction=name)`` uses it)."""
    return PREDICTIONS.add(name, prediction)


def get_prediction(name: str) -> Prediction:
    """The parameterisation registered as ``name``; a ValueError lists the registered names."""
    return PREDICTIONS.lookup(name)


register_prediction("eps", Prediction(
    c_in=_one,
    to_eps=lambda out, z, lam, d: out,
    target=lambda x, eps, lam, d: eps,
    eps_mse_factor=_one,
))


def _v_to_eps(out, z, lam, d):
    alpha, sigma = alpha_sigma(lam)
    return sigma * z + alpha * out


def _v_target(x, eps, lam, d):
    alpha, sigma = alpha_sigma(lam)
    return alpha * eps - sigma * x


register_prediction("v", Prediction(
    c_in=_one,
    to_eps=_v_to_eps,
    target=_v_target,
    eps_mse_factor=lambda lam, d: torch.exp(-torch.nn.functional.logsigmoid(lam)),  # 1 / alpha^2
))


def _edm_to_eps(out, z, lam, d):
    alpha, sigma = alpha_sigma(lam)
    r = _r(lam, d)
    # eps = (z - alpha x) / sigma with x = d^2 alpha z / r^2 + sigma d F / r, simplified so that no
    # difference of nearly equal numbers is divided by a small sigma: z - d^2 alpha^2 z / r^2 = sigma^2 z / r^2
    return sigma * z / r**2 - alpha * d * out / r


def _edm_target(x, eps, lam, d):
    alpha, sigma = alpha_sigma(lam)
    r = _r(lam, d)
    # F = (x - d^2 alpha z / r^2) r / (sigma d) with z = alpha x + sigma eps, simplified likewise
    return (sigma * x - d**2 * alpha * eps) / (d * r)


register_prediction("edm", Prediction(
    c_in=lambda lam, d: 1.0 / _r(lam, d),
    to_eps=_edm_to_eps,
    target=_edm_target,
    eps_mse_factor=lambda lam, d: _r(lam, d) ** 2 / (d * alpha_sigma(lam)[0]) ** 2,
))


# -- loss weighting over lam and the training density of lam ------------------------------------------

#: name -> (lam, parameter) -> factor on the eps-space squared error; the parameter's default beside it.
WEIGHTINGS: dict[str, tuple[object, float | None]] = {
    "none": (None, None),
    "min_snr": (lambda lam, gamma: torch.clamp(gamma * torch.exp(-lam), max=1.0), 5.0),
    "sigmoid": (lambda lam, b: torch.sigmoid(b - lam), 2.0),
}


def _normal_lams(u, lam_min, lam_max, mean=2.4, std=2.4):
    # EDM: log sigma_edm ~ N(-1.2, 1.2^2) and sigma_edm = e^(-lam/2), so lam ~ N(2.4, 2.4^2); truncated by
    # drawing u inside the normal CDF's values at the two ends
    normal = torch.distributions.Normal(mean, std)
    lo, hi = normal.cdf(torch.tensor(float(lam_min))), normal.cdf(torch.tensor(float(lam_max)))
    return normal.icdf((hi - (hi - lo) * u.double()).clamp(1e-12, 1 - 1e-12)).to(u.dtype)


#: name -> (u in [0, 1], lam_min, lam_max) -> lam; u = 0 is the data end, as in schedules.log_snr_cosine.
DENSITIES: dict[str, object] = {"cosine": log_snr_cosine, "lognormal": _normal_lams}


def sample_lams(density: str, n: int, lam_min: float, lam_max: float, generator=None, dtype=torch.float32,
                device=None):
    """``n`` training log-SNRs drawn from ``density`` truncated to [lam_min, lam_max] (on ``device``)."""
    if density not in DENSITIES:
        raise ValueError(f"unknown lam density {density!r}; choose one of {sorted(DENSITIES)}")
    check_lam_range(lam_min, lam_max)
    u = torch.rand(n, generator=generator, dtype=dtype, device=device)
    return DENSITIES[density](u, lam_min, lam_max).clamp(lam_min, lam_max)


def loss_weight(weighting: str, lam: torch.Tensor, param: float | None = None) -> torch.Tensor | None:
    """The weighting's factor on the eps-space squared error at ``lam`` (None for ``"none"``)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {sorted(WEIGHTINGS)}")
    fn, default = WEIGHTINGS[weighting]
    return None if fn is None else fn(lam, default if param is None else param)


def prediction_loss(model, x, labels, p_uncond: float, num_classes: int, generator=None, lam_min=-20.0,
                    lam_max=20.0, density: str = "cosine", weighting: str = "none",
                    weighting_param: float | None = None, rows: slice | None = None) -> torch.Tensor:
    """The CFG training loss (paper Alg. 1: one net, labels dropped with ``p_uncond``) in the space of the
    model's own prediction: ``|raw - target|^2`` averaged over pixels, times ``loss_weight / eps_mse_factor``
    when a weighting is chosen. ``model.raw(z, lam, labels)`` is the network's output before ``to_eps``.
    With ``prediction="eps"``, ``density="cosine"`` and ``weighting="none"`` it is ``diffusion.eps_loss``.
    ``rows`` (data-parallel training) evaluates the network on those rows of the batch only, averaging over
    them; the random draws are still made for the whole batch, so every process draws the same numbers.
    """
    if x.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(
            f"need labels of shape ({x.shape[0]},) for x of shape {tuple(x.shape)}, got {tuple(labels.shape)}"
        )
    pred = get_prediction(model.config.prediction)
    d = model.config.sigma_data
    lam = sample_lams(density, x.shape[0], lam_min, lam_max, generator, x.dtype, x.device)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    labels = drop_labels(labels, p_uncond, num_classes, generator)
    if rows is not None:
        x, lam, eps, labels = x[rows], lam[rows], eps[rows], labels[rows]
    z = q_sample(x, lam, eps)
    raw = model.raw(z, lam, labels)
    lam_b = expand_lam(lam, x)
    per_sample = (raw.float() - pred.target(x, eps, lam_b, d)).pow(2).flatten(1).mean(1)
    w = loss_weight(weighting, lam, weighting_param)
    if w is not None:
        per_sample = per_sample * w / pred.eps_mse_factor(lam, d)
    return per_sample.mean()


def _check_sigma_data(d: float) -> None:
    if not (d > 0 and math.isfinite(d)):
        raise ValueError(f"sigma_data is the data's standard deviation and must be positive, got {d}")
