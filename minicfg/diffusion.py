"""The continuous-time Gaussian diffusion in log-SNR time (Ho & Salimans 2022, Sec. 2).

Forward process: ``q(z_lam | x) = N(alpha_lam x, sigma_lam^2 I)`` (Eq. 1), with the Markov transitions
``q(z_lam | z_lam')`` (Eq. 2) for ``lam < lam'``, and the posterior ``q(z_lam' | z_lam, x)`` (Eq. 3) the
reverse process imitates. Every function broadcasts ``lam`` of shape () or (B,) over ``x`` of shape
(B, ...). The derivations behind each formula live in ``derivations/forward.py`` and
``derivations/posterior.py``, and the tests tie the two together.
"""

from __future__ import annotations

import torch

from ._checks import check_labels, check_same_shape
from .schedules import alpha_sigma, log_snr_cosine

__all__ = [
    "expand_lam",
    "q_sample",
    "q_transition",
    "posterior",
    "reverse_variance",
    "x_from_eps",
    "eps_from_x",
    "score_from_eps",
    "drop_labels",
    "eps_loss",
    "classifier_loss",
    "noisy_accuracy",
]


def expand_lam(lam, x: torch.Tensor) -> torch.Tensor:
    """Reshape ``lam`` (a number, 0-d, or leading-dims shaped like ``x``) to broadcast over ``x``."""
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if lam.ndim > x.ndim or tuple(lam.shape) != tuple(x.shape[: lam.ndim]):
        raise ValueError(
            f"lam of shape {tuple(lam.shape)} does not match the leading dimensions of a tensor of shape "
            f"{tuple(x.shape)}; pass one lam per sample, shape ({x.shape[0] if x.ndim else ''},), or a scalar"
        )
    return lam.reshape(tuple(lam.shape) + (1,) * (x.ndim - lam.ndim))


def _check_order(lam: torch.Tensor, lam_next: torch.Tensor, lo: str, hi: str) -> None:
    if not bool(torch.all(lam < lam_next)):
        raise ValueError(f"need {lo} < {hi} (log-SNR increases towards the data), got {lo}={lam}, {hi}={lam_next}")


def q_sample(x: torch.Tensor, lam, eps: torch.Tensor) -> torch.Tensor:
    """Draw ``z_lam = alpha_lam x + sigma_lam eps`` from ``q(z_lam | x)`` (paper Eq. 1)."""
    check_same_shape(x=x, eps=eps)
    alpha, sigma = alpha_sigma(expand_lam(lam, x))
    return alpha * x + sigma * eps


def q_transition(z_src: torch.Tensor, lam, lam_src) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``q(z_lam | z_lam_src)`` for ``lam < lam_src`` (paper Eq. 2).

    ``mean = (alpha_lam / alpha_lam_src) z_lam_src`` and
    ``var = sigma_{lam|lam_src}^2 = (1 - e^(lam - lam_src)) sigma_lam^2``.
    """
    lam, lam_src = expand_lam(lam, z_src), expand_lam(lam_src, z_src)
    _check_order(lam, lam_src, "lam", "lam_src")
    alpha, sigma = alpha_sigma(lam)
    alpha_src, _ = alpha_sigma(lam_src)
    var = -torch.expm1(lam - lam_src) * sigma**2
    return alpha / alpha_src * z_src, var.expand_as(z_src)


def posterior(z: torch.Tensor, x: torch.Tensor, lam, lam_next) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``q(z_lam_next | z_lam, x)`` for ``lam < lam_next`` (paper Eq. 3).

    ``mean = e^(lam - lam') (alpha_lam' / alpha_lam) z_lam + (1 - e^(lam - lam')) alpha_lam' x`` and
    ``var = (1 - e^(lam - lam')) sigma_lam'^2``, with ``lam' = lam_next``; derived by Gaussian
    conjugacy in ``derivations.posterior``.
    """
    check_same_shape(z=z, x=x)
    lam, lam_next = expand_lam(lam, z), expand_lam(lam_next, z)
    _check_order(lam, lam_next, "lam", "lam_next")
    alpha, _ = alpha_sigma(lam)
    alpha_next, sigma_next = alpha_sigma(lam_next)
    ratio = torch.exp(lam - lam_next)
    one_minus = -torch.expm1(lam - lam_next)
    mean = ratio * (alpha_next / alpha) * z + one_minus * alpha_next * x
    var = one_minus * sigma_next**2
    return mean, var.expand_as(z)


def reverse_variance(lam, lam_next, v: float) -> torch.Tensor:
    """The reverse-step variance ``(sigma~^2_{lam'|lam})^(1-v) (sigma^2_{lam|lam'})^v`` (paper Sec. 2).

    A log-space interpolation between the posterior variance (v = 0) and the forward transition
    variance (v = 1); the paper samples with v = 0.3. Shapes broadcast like ``lam``.
    """
    if not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"v interpolates between two variances and must lie in [0, 1], got v={v}")
    lam = torch.as_tensor(lam, dtype=torch.get_default_dtype()) if not torch.is_tensor(lam) else lam
    lam_next = torch.as_tensor(lam_next, dtype=lam.dtype, device=lam.device)
    _check_order(lam, lam_next, "lam", "lam_next")
    log_one_minus = torch.log(-torch.expm1(lam - lam_next))
    log_sig2 = torch.nn.functional.logsigmoid(-lam)
    log_sig2_next = torch.nn.functional.logsigmoid(-lam_next)
    return torch.exp(log_one_minus + (1 - v) * log_sig2_next + v * log_sig2)


def x_from_eps(z: torch.Tensor, lam, eps: torch.Tensor) -> torch.Tensor:
    """Predicted data ``x = (z - sigma eps) / alpha`` (paper Sec. 2, ``x_theta``)."""
    check_same_shape(z=z, eps=eps)
    alpha, sigma = alpha_sigma(expand_lam(lam, z))
    return (z - sigma * eps) / alpha


def eps_from_x(z: torch.Tensor, lam, x: torch.Tensor) -> torch.Tensor:
    """Noise that explains ``z`` given ``x``: ``eps = (z - alpha x) / sigma``."""
    check_same_shape(z=z, x=x)
    alpha, sigma = alpha_sigma(expand_lam(lam, z))
    return (z - alpha * x) / sigma


def score_from_eps(eps: torch.Tensor, lam) -> torch.Tensor:
    """Score of the marginal, ``grad_z log p(z_lam) = -eps / sigma`` (paper Sec. 2, eps ~ -sigma grad)."""
    _, sigma = alpha_sigma(expand_lam(lam, eps))
    return -eps / sigma


def drop_labels(
    labels: torch.Tensor, p_uncond: float, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each label by the null index ``num_classes`` with probability ``p_uncond`` (paper Alg. 1)."""
    if not 0.0 <= float(p_uncond) <= 1.0:
        raise ValueError(f"p_uncond is a probability and must lie in [0, 1], got {p_uncond}")
    check_labels(labels, num_classes, allow_null=True)
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p_uncond
    return torch.where(drop, torch.full_like(labels, num_classes), labels)


def eps_loss(
    model,
    x: torch.Tensor,
    labels: torch.Tensor,
    p_uncond: float,
    num_classes: int,
    generator: torch.Generator | None = None,
    lam_min: float = -20.0,
    lam_max: float = 20.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """The joint conditional/unconditional epsilon-prediction loss (paper Alg. 1).

    ``lam = log_snr_cosine(u)`` with ``u ~ U[0, 1]`` per sample, ``z = alpha x + sigma eps``, labels
    dropped to the null index with probability ``p_uncond``, and ``|| eps_theta(z, lam, c) - eps ||^2``
    averaged over pixels. ``reduction="none"`` returns one loss per sample, ``"mean"`` their mean.
    The model is called as ``model(z, lam, labels) -> eps``.
    """
    if x.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(
            f"need labels of shape ({x.shape[0]},) for x of shape {tuple(x.shape)}, got {tuple(labels.shape)}"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    b = x.shape[0]
    u = torch.rand(b, generator=generator, device=x.device, dtype=x.dtype)
    lam = log_snr_cosine(u, lam_min, lam_max)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    z = q_sample(x, lam, eps)
    labels = drop_labels(labels, p_uncond, num_classes, generator)
    pred = model(z, lam, labels)
    per_sample = (pred.float() - eps).pow(2).flatten(1).mean(1)
    return per_sample.mean() if reduction == "mean" else per_sample


def classifier_loss(
    classifier,
    x: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator | None = None,
    lam_min: float = -20.0,
    lam_max: float = 20.0,
    reduction: str = "mean",
    rows: slice | None = None,
) -> torch.Tensor:
    """Cross-entropy of a noisy classifier ``classifier(z_lam, lam) -> logits`` on ``z_lam ~ q(z_lam | x)``.

    ``lam`` is drawn from the cosine schedule like :func:`eps_loss`, so the classifier learns
    ``p(c | z_lam)`` at every noise level that guidance will ask it about (Dhariwal & Nichol 2021).
    Labels must be real classes (no null label). ``rows`` (data-parallel training) classifies only those rows,
    with the noise drawn for the whole batch.
    """
    if x.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(
            f"need labels of shape ({x.shape[0]},) for x of shape {tuple(x.shape)}, got {tuple(labels.shape)}"
        )
    u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
    lam = log_snr_cosine(u, lam_min, lam_max)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if rows is not None:
        x, lam, eps, labels = x[rows], lam[rows], eps[rows], labels[rows]
    logits = classifier(q_sample(x, lam, eps), lam)
    check_labels(labels, logits.shape[1], allow_null=False)
    return torch.nn.functional.cross_entropy(logits.float(), labels, reduction=reduction)


@torch.no_grad()
def noisy_accuracy(classifier, x: torch.Tensor, labels: torch.Tensor, lams, generator=None) -> dict[float, float]:
    """Accuracy of a noisy classifier on ``z_lam = alpha x + sigma eps`` at each log-SNR in ``lams``, with the same
    noise ``eps`` at every lam: ``{lam: fraction of argmax(classifier(z_lam, lam)) == labels}``. The noise is
    drawn on the CPU and everything is moved to the classifier's device."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    params = classifier.parameters() if isinstance(classifier, torch.nn.Module) else iter(())
    device = next(params, x).device
    x, noise, labels = x.to(device), noise.to(device), labels.to(device)
    out = {}
    for lam in lams:
        lam_t = torch.full((x.shape[0],), float(lam), dtype=x.dtype, device=device)
        hits = classifier(q_sample(x, lam_t, noise), lam_t).argmax(1) == labels
        out[float(lam)] = float(hits.double().mean())
    return out
