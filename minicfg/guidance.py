"""Guidance: turning conditional/unconditional predictions or a classifier into a guided eps.

Conventions: the guidance strength is the paper's ``w`` (Ho & Salimans 2022, Eq. 6),
``eps~ = (1 + w) eps(z, c) - w eps(z)``; ``w = 0`` is the plain conditional model and ``w = -1`` the
unconditional one. The null label is the index ``num_classes``. ``guidance_scale = 1 + w`` (the name
other libraries use) is accepted only through :func:`w_from_guidance_scale`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .diffusion import check_labels, check_same_shape, expand_lam
from .schedules import alpha_sigma

__all__ = [
    "W_MAX",
    "check_w",
    "w_from_guidance_scale",
    "cfg",
    "classifier_guided_eps",
    "implicit_classifier_grad",
    "cfg_eps_fn",
    "classifier_grad",
    "classifier_eps_fn",
]

#: Guidance strengths beyond this are almost certainly a mistake (the paper's largest is w = 4).
W_MAX = 100.0

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_w(w) -> None:
    """Raise ValueError unless every ``w`` is finite and within [-1, W_MAX]."""
    values = w.detach().flatten().tolist() if torch.is_tensor(w) else [w]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"guidance strength w must be a finite number, got {value!r}")
        if value < -1.0 or value > W_MAX:
            raise ValueError(
                f"guidance strength w={value} is outside [-1, {W_MAX:g}]: w=-1 is the unconditional model, "
                f"w=0 the conditional one, and the paper uses w up to 4. If you meant a 'guidance scale' s "
                f"(= 1 + w), pass w = s - 1 (see w_from_guidance_scale)"
            )


def w_from_guidance_scale(guidance_scale: float) -> float:
    """The paper's ``w`` from the ``guidance_scale = 1 + w`` used by other libraries (e.g. diffusers)."""
    w = float(guidance_scale) - 1.0
    check_w(w)
    return w


def _w_like(w, ref: torch.Tensor) -> torch.Tensor | float:
    """``w`` as a number, or a per-sample tensor of shape (B,) reshaped to broadcast over ``ref``."""
    if not torch.is_tensor(w):
        return float(w)
    w = w.to(device=ref.device, dtype=ref.dtype)
    if w.ndim == 0:
        return w
    if w.ndim != 1 or w.shape[0] != ref.shape[0]:
        raise ValueError(f"per-sample w must have shape ({ref.shape[0]},), got {tuple(w.shape)}")
    return w.reshape((-1,) + (1,) * (ref.ndim - 1))


def cfg(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w) -> torch.Tensor:
    """Classifier-free guidance, ``eps~ = (1 + w) eps_cond - w eps_uncond`` (paper Eq. 6).

    ``w`` is a number or a per-sample tensor of shape (B,).
    """
    check_same_shape(eps_cond=eps_cond, eps_uncond=eps_uncond)
    check_w(w)
    w = _w_like(w, eps_cond)
    return (1 + w) * eps_cond - w * eps_uncond


def classifier_guided_eps(eps: torch.Tensor, grad_log_prob: torch.Tensor, sigma, w) -> torch.Tensor:
    """Classifier guidance, ``eps~ = eps - w sigma grad_z log p(c | z)`` (paper Eq. 4; Dhariwal & Nichol).

    ``sigma`` is a number or broadcasts over ``eps`` (e.g. shape (B, 1, 1, 1)).
    """
    check_same_shape(eps=eps, grad_log_prob=grad_log_prob)
    check_w(w)
    return eps - _w_like(w, eps) * sigma * grad_log_prob


def implicit_classifier_grad(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, sigma) -> torch.Tensor:
    """Gradient of the implicit classifier, ``grad log p^i(c | z) = -(eps_cond - eps_uncond) / sigma``.

    From Bayes, ``p^i(c | z) ∝ p(z | c) / p(z)``, and ``eps ~= -sigma grad log p`` (paper Sec. 3.2).
    """
    check_same_shape(eps_cond=eps_cond, eps_uncond=eps_uncond)
    return -(eps_cond - eps_uncond) / sigma


def _is_all(w, value: float) -> bool:
    if torch.is_tensor(w):
        return bool(torch.all(w == value))
    return float(w) == value


def cfg_eps_fn(model, labels: torch.Tensor, w, num_classes: int) -> EpsFn:
    """An eps-callable ``eps_fn(z, lam)`` that applies classifier-free guidance to ``model``.

    The conditional and unconditional predictions run as one doubled batch (one network call per
    step); when ``w == 0`` only the conditional pass runs and when ``w == -1`` only the unconditional
    one. ``model`` is called as ``model(z, lam, labels)``; ``w`` is a number or a (B,) tensor.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    check_labels(labels, num_classes, allow_null=True)
    check_w(w)
    null = torch.full_like(labels, num_classes)

    def eps_fn(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != labels.shape[0]:
            raise ValueError(f"batch of {z.shape[0]} noisy inputs for {labels.shape[0]} labels")
        if _is_all(w, 0.0):
            return model(z, lam, labels)
        if _is_all(w, -1.0):
            return model(z, lam, null)
        out = model(torch.cat([z, z]), torch.cat([lam, lam]), torch.cat([labels, null]))
        eps_cond, eps_uncond = out.chunk(2)
        return cfg(eps_cond, eps_uncond, w)

    return eps_fn


def classifier_grad(classifier, z: torch.Tensor, lam: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``grad_z log p(c | z_lam)`` of a noisy classifier ``classifier(z, lam) -> logits``, by autograd.

    Works inside ``torch.no_grad()`` (gradients are switched on locally); not inside
    ``torch.inference_mode()``, whose tensors cannot take part in autograd.
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        logits = classifier(z, lam)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        log_probs = torch.log_softmax(logits, dim=1)
        check_labels(labels, log_probs.shape[1], allow_null=False)
        picked = log_probs.gather(1, labels[:, None]).sum()
        (grad,) = torch.autograd.grad(picked, z)
    return grad.to(z.dtype)


def classifier_eps_fn(eps_fn: EpsFn, classifier, labels: torch.Tensor, w) -> EpsFn:
    """Classifier guidance as an eps-callable: ``eps~ = eps_fn(z, lam) - w sigma grad_z log p(c | z)``.

    ``eps_fn`` is the diffusion model to guide: unconditional (e.g. ``cfg_eps_fn(model, null, 0, K)``
    or ``cfg_eps_fn(model, labels, -1, K)``) as in Dhariwal & Nichol, or conditional. Guiding the
    unconditional model with ``w + 1`` equals guiding the conditional one with ``w`` when the
    classifier is the model's implicit one (``derivations.guidance``). Works with any sampler.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    check_w(w)

    def guided(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != labels.shape[0]:
            raise ValueError(f"batch of {z.shape[0]} noisy inputs for {labels.shape[0]} labels")
        eps = eps_fn(z, lam)
        if _is_all(w, 0.0):
            return eps
        _, sigma = alpha_sigma(expand_lam(lam, z))
        return classifier_guided_eps(eps, classifier_grad(classifier, z, lam, labels), sigma, w)

    return guided
