"""The guidance formulas: turning conditional/unconditional predictions or a classifier into a guided eps.

Conventions: the guidance strength is the paper's ``w`` (Ho & Salimans 2022, Eq. 6),
``eps~ = (1 + w) eps(z, c) - w eps(z)``; ``w = 0`` is the plain conditional model and ``w = -1`` the
unconditional one. The null label is the index ``num_classes``. ``guidance_scale = 1 + w`` (the name
other libraries use) is accepted only through :func:`w_from_guidance_scale`.

The builders here (:func:`cfg_eps_fn`, :func:`classifier_guidance`) have the guidance registry's signature,
``builder(model, labels, w, **options) -> eps_fn(z, lam)``, where ``model`` is called as
``model(z, lam, labels) -> eps`` and ``w`` is a number, a per-sample tensor of shape (B,), or a function of the
log-SNR, ``w(lam) -> number or (B,) tensor`` (for schedules and intervals over lam). The registry itself, with
one record per method, is :mod:`minicfg.guidance`, which re-exports everything public here; this module and
:mod:`minicfg.guidance_variants` (which builds on it) import nothing of the registry.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._checks import W_MAX, check_labels, check_same_shape, check_w, check_w_spec
from .diffusion import expand_lam
from .schedules import alpha_sigma

__all__ = [
    "W_MAX",
    "w_from_guidance_scale",
    "cfg",
    "classifier_guided_eps",
    "implicit_classifier_grad",
    "classifier_grad",
    "cfg_eps_fn",
    "classifier_eps_fn",
    "classifier_guidance",
]

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Builder = Callable[..., EpsFn]


def _w_at(w, lam: torch.Tensor):
    """``w`` at log-SNR ``lam`` (B,): the number or tensor itself, or ``w(lam)`` checked."""
    if callable(w) and not torch.is_tensor(w):
        value = w(lam)
        check_w(value)
        return value
    return w


def _num_classes(model) -> int:
    config = getattr(model, "config", None)
    n = getattr(config, "num_classes", None) if config is not None else getattr(model, "num_classes", None)
    if n is None:
        raise ValueError("cannot tell the number of classes of this model: pass num_classes")
    return int(n)


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


def _cond_and_uncond(model, z: torch.Tensor, lam: torch.Tensor, labels: torch.Tensor, null: torch.Tensor):
    """``(eps(z, c), eps(z))`` from one network call on the doubled batch (conditional rows, then null-label rows)."""
    return model(torch.cat([z, z]), torch.cat([lam, lam]), torch.cat([labels, null])).chunk(2)


def cfg_eps_fn(model, labels: torch.Tensor, w, num_classes: int | None = None) -> EpsFn:
    """Classifier-free guidance (paper Eq. 6) as an eps-callable ``eps_fn(z, lam)``.

    The conditional and unconditional predictions run as one doubled batch (one network call per
    step); when ``w == 0`` only the conditional pass runs and when ``w == -1`` only the unconditional
    one. ``model`` is called as ``model(z, lam, labels)``; ``w`` is a number, a (B,) tensor or a
    function of lam; ``num_classes`` (the null label's index) defaults to ``model.config.num_classes``.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    num_classes = _num_classes(model) if num_classes is None else num_classes
    check_labels(labels, num_classes, allow_null=True)
    check_w_spec(w)
    null = torch.full_like(labels, num_classes)

    def eps_fn(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != labels.shape[0]:
            raise ValueError(f"batch of {z.shape[0]} noisy inputs for {labels.shape[0]} labels")
        w_now = _w_at(w, lam)
        if _is_all(w_now, 0.0):
            return model(z, lam, labels)
        if _is_all(w_now, -1.0):
            return model(z, lam, null)
        return cfg(*_cond_and_uncond(model, z, lam, labels, null), w_now)

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
    """Classifier guidance of any eps-callable: ``eps~ = eps_fn(z, lam) - w sigma grad_z log p(c | z)``.

    ``eps_fn`` is the diffusion model to guide: unconditional (e.g. ``cfg_eps_fn(model, labels, -1)``)
    as in Dhariwal & Nichol, or conditional. Guiding the unconditional model with ``w + 1`` equals
    guiding the conditional one with ``w`` when the classifier is the model's implicit one
    (``derivations.guidance``). Works with any sampler; ``w`` may be a function of lam.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    check_w_spec(w)

    def guided(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != labels.shape[0]:
            raise ValueError(f"batch of {z.shape[0]} noisy inputs for {labels.shape[0]} labels")
        eps = eps_fn(z, lam)
        w_now = _w_at(w, lam)
        if _is_all(w_now, 0.0):
            return eps
        _, sigma = alpha_sigma(expand_lam(lam, z))
        return classifier_guided_eps(eps, classifier_grad(classifier, z, lam, labels), sigma, w_now)

    return guided


_BASES = {"uncond": -1.0, "cond": 0.0}


def classifier_guidance(model, labels: torch.Tensor, w, *, classifier=None, base: str = "uncond") -> EpsFn:
    """Classifier guidance (paper Eq. 4; Dhariwal & Nichol 2021) of a CFG-trained ``model``.

    ``base="uncond"`` guides the unconditional model (the null label), as Dhariwal & Nichol do;
    ``base="cond"`` guides the conditional one. ``classifier(z, lam) -> logits`` is a noisy classifier
    (``minicfg train-classifier``).
    """
    if classifier is None:
        raise ValueError("guidance 'classifier' needs a noisy classifier (minicfg train-classifier)")
    if base not in _BASES:
        raise ValueError(f"base must be one of {sorted(_BASES)}, got {base!r}")
    return classifier_eps_fn(cfg_eps_fn(model, labels, _BASES[base]), classifier, labels, w)

