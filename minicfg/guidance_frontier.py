"""Guidance methods of 2024-2025 (issue 31): CFG++, APG, CFG-Zero*, a w schedule increasing in lam, and
independent-condition guidance, each a guidance-registry entry with the registry's signature
``builder(model, labels, w, **options) -> eps_fn(z, lam)``.

Two of them use the sampler contract of :mod:`minicfg.guided` beyond one eps: CFG++ returns a ``Guided(eps,
renoise)`` pair, and APG, CFG-Zero* and the w schedule are callables with ``begin(lams)`` (a momentum reset, the
first steps, the grid a schedule is normalised over). The algebra is in :mod:`derivations.guidance_frontier`. Built
on :mod:`minicfg.guidance_formulas`; the registry (:mod:`minicfg.guidance`) imports this module, never the other way
round. Cost: like CFG, each method evaluates two predictions per evaluation (one network call on a doubled batch,
two passes per sample), except where noted: one where ``w`` makes a method the conditional or unconditional model,
none in CFG-Zero*'s zeroed steps.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_labels, check_w_spec
from .diffusion import expand_lam
from .guidance_formulas import _cond_and_uncond, _is_all, _num_classes, _w_at, _w_like, cfg, cfg_eps_fn
from .guided import Guided
from .schedules import alpha_sigma

__all__ = ["cfgpp", "apg", "apg_update", "cfg_zero_star", "optimized_scale", "w_schedule", "W_SHAPES",
           "independent_condition"]


def _check_batch(z: torch.Tensor, labels: torch.Tensor) -> None:
    if z.shape[0] != labels.shape[0]:
        raise ValueError(f"batch of {z.shape[0]} noisy inputs for {labels.shape[0]} labels")


def _per_sample(values: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor shaped to broadcast over ``ref`` (B, ...)."""
    return values.reshape((-1,) + (1,) * (ref.ndim - 1))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product over all dimensions but the first, shaped to broadcast over ``a``."""
    return _per_sample((a.flatten(1) * b.flatten(1)).sum(1), a)


def _needs_begin(name: str) -> ValueError:
    return ValueError(f"{name} needs the sampling grid before its first evaluation: run it through a sampler of "
                      f"minicfg.samplers (which calls begin(lams)), or call eps_fn.begin(lams) yourself")


# ------------------------------------------------------------------------------------------------ CFG++
def cfgpp(model, labels: torch.Tensor, w) -> callable:
    """CFG++ (Chung et al. 2024): x~ from CFG's eps, renoised with the unconditional eps.

    Chung, Kim, Park, Nam and Ye 2024, "CFG++: Manifold-constrained classifier free guidance for diffusion models",
    Algorithm 1 (DDIM). Returns ``Guided(eps=(1 + w) eps(z, c) - w eps(z), renoise=eps(z))``. The paper writes
    the first as ``eps(z) + l (eps(z, c) - eps(z))`` with its own scale ``l`` in [0, 1] (its lambda); that scale is a
    ``guidance_scale``, so here ``w = l - 1`` (``guidance.w_from_guidance_scale(l)``) and the paper's range is
    ``w`` in [-1, 0]. In a DDIM step from lam to lam' this is DDIM with CFG at ``1 + w' = l / (1 - e^(-h))``,
    ``h = (lam' - lam) / 2`` (``derivations.guidance_frontier.derive_cfgpp_ddim``): a CFG strength that grows as
    the steps shrink. ``w = -1`` (``l = 0``) is the unconditional model exactly (one pass); no ``w`` is the plain
    conditional model, since the renoising eps is always the unconditional one. Two passes per evaluation.
    """
    guided = cfg_eps_fn(model, labels, w)  # checks labels and w; the unconditional model at w = -1
    null = torch.full_like(labels, _num_classes(model))

    def eps_fn(z: torch.Tensor, lam: torch.Tensor):
        _check_batch(z, labels)
        w_now = _w_at(w, lam)
        if _is_all(w_now, -1.0):
            return guided(z, lam)
        eps_c, eps_u = _cond_and_uncond(model, z, lam, labels, null)
        return Guided(eps=cfg(eps_c, eps_u, w_now), renoise=eps_u)

    return eps_fn


# ------------------------------------------------------------------------------------------------ APG
def apg_update(diff: torch.Tensor, pred_cond: torch.Tensor, eta: float, norm_threshold: float | None):
    """APG's update from the guidance difference ``diff`` (after momentum): scaled to norm at most
    ``norm_threshold`` per sample, then split into its projection on ``pred_cond`` and the orthogonal rest,
    ``rest + eta * projection`` (``derivations.guidance_frontier.derive_apg_split``). A zero ``pred_cond`` has no
    direction: all of ``diff`` counts as orthogonal."""
    if norm_threshold is not None:
        norm = _per_sample(diff.flatten(1).norm(dim=1), diff)
        diff = diff * (norm_threshold / norm).clamp(max=1.0)  # a zero diff: inf clamped to 1
    unit = torch.nn.functional.normalize(pred_cond.flatten(1), dim=1).reshape(pred_cond.shape)
    parallel = _dot(diff, unit) * unit
    return (diff - parallel) + eta * parallel


class _APG:
    """The eps-callable of :func:`apg`; the momentum's running sum lives here and ``begin`` clears it."""

    def __init__(self, model, labels, w, eta, norm_threshold, momentum, space):
        self.cond = cfg_eps_fn(model, labels, 0.0)  # checks labels
        check_w_spec(w)
        self.model, self.labels, self.w = model, labels, w
        self.null = torch.full_like(labels, _num_classes(model))
        self.eta, self.norm_threshold, self.momentum, self.space = eta, norm_threshold, momentum, space
        self.average = None

    def begin(self, lams: torch.Tensor) -> None:
        self.average = None  # each run starts without momentum

    def __call__(self, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        _check_batch(z, self.labels)
        if not callable(self.w) and _is_all(self.w, 0.0):
            return self.cond(z, lam)  # w = 0 at every step: the conditional model, one pass, momentum unused
        w_now = _w_like(_w_at(self.w, lam), z)
        eps_c, eps_u = _cond_and_uncond(self.model, z, lam, self.labels, self.null)
        if self.space == "x":  # x~ = (z - sigma eps) / alpha, so x~_c - x~_u = -(sigma / alpha) (eps_c - eps_u)
            alpha, sigma = alpha_sigma(expand_lam(lam, z))
            pred_c, diff = (z - sigma * eps_c) / alpha, -(sigma / alpha) * (eps_c - eps_u)
        else:
            pred_c, diff = eps_c, eps_c - eps_u
        if self.momentum != 0.0:
            if self.average is not None:
                diff = diff + self.momentum * self.average
            self.average = diff
        change = w_now * apg_update(diff, pred_c, self.eta, self.norm_threshold)
        # x~ = x~_c + change is the eps eps_c - (alpha / sigma) change (no x converted back by a subtraction)
        return eps_c + change if self.space == "eps" else eps_c - (alpha / sigma) * change


def apg(model, labels: torch.Tensor, w, *, eta: float = 0.0, norm_threshold: float | None = None,
        momentum: float = 0.0, space: str = "x") -> callable:
    """Adaptive projected guidance, APG (Sadat et al. 2024): the update's part along the conditional prediction
    down-weighted, with a norm cap and momentum.

    Sadat, Hilliges and Weber 2024, "Eliminating oversaturation and artifacts of high guidance scales in diffusion
    models", Sec. 4 and Algorithm 1.

    The guidance difference ``D = pred(z, c) - pred(z)`` is replaced by the running sum
    ``M_k = D_k + momentum * M_(k-1)`` over the evaluations of a run (the paper's momentum beta; ``begin`` starts
    each run afresh, and a sampler of two evaluations per step updates it twice per step), scaled to norm at most
    ``norm_threshold`` per sample (their r; None: no threshold), split into its projection on the conditional
    prediction and the orthogonal rest, and the guided prediction is ``pred(z, c) + w (rest + eta * projection)``
    (:func:`apg_update`). ``space="x"`` (default) works on the x-predictions, as the paper does (it finds the
    parallel part is what over-saturates the image); ``"eps"`` on the eps predictions. ``eta = 1``, no threshold
    and ``momentum = 0`` is CFG (Eq. 6) in either space (``derivations.guidance_frontier.derive_apg_split``);
    ``w = 0`` is the conditional model. Defaults: ``eta = 0`` (the paper's finding: drop the parallel part), no
    threshold (a useful r depends on the size and range of the data) and no momentum (the paper's is negative);
    set them with ``--norm-threshold`` and ``--momentum``. Two passes per evaluation.
    """
    eta, momentum = float(eta), float(momentum)
    if not math.isfinite(eta):
        raise ValueError(f"eta weighs the parallel part of the update and must be finite, got {eta}")
    if norm_threshold is not None and not (float(norm_threshold) > 0 and math.isfinite(float(norm_threshold))):
        raise ValueError(f"norm_threshold caps the update's norm and must be positive (or None for no cap), got "
                         f"{norm_threshold}")
    if not -1.0 < momentum < 1.0:
        raise ValueError(f"momentum must lie in (-1, 1) (the paper uses a negative one; 0 is none), got {momentum}")
    if space not in ("x", "eps"):
        raise ValueError(f"space must be 'x' (the predicted image) or 'eps' (the predicted noise), got {space!r}")
    threshold = None if norm_threshold is None else float(norm_threshold)
    return _APG(model, labels, w, eta, threshold, momentum, space)


# ------------------------------------------------------------------------------------------------ CFG-Zero*
def optimized_scale(eps_c: torch.Tensor, eps_u: torch.Tensor) -> torch.Tensor:
    """CFG-Zero*'s ``s* = <eps_c, eps_u> / ||eps_u||^2`` per sample (B,), the ``s`` minimising
    ``||eps_c - s eps_u||^2`` (``derivations.guidance_frontier.derive_cfg_zero_scale``); 1 where ``eps_u = 0``."""
    num = (eps_c.flatten(1) * eps_u.flatten(1)).sum(1)
    den = eps_u.flatten(1).square().sum(1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.ones_like(den))


class _CFGZeroStar:
    """The eps-callable of :func:`cfg_zero_star`; ``begin`` reads which lams are the first ``zero_init_steps``."""

    def __init__(self, model, labels, w, zero_init_steps, scaled):
        self.cond = cfg_eps_fn(model, labels, 0.0)  # checks labels
        check_w_spec(w)
        self.model, self.labels, self.w = model, labels, w
        self.null = torch.full_like(labels, _num_classes(model))
        self.steps, self.scaled = zero_init_steps, scaled
        self.last_zeroed = None

    def begin(self, lams: torch.Tensor) -> None:
        evaluated = lams.numel() - 1  # every sampler evaluates each lam of the grid but the last
        if self.steps >= evaluated:
            raise ValueError(f"zero_init_steps={self.steps} would zero every one of the {evaluated} steps; use fewer "
                             f"(the paper zeroes the first one or few)")
        self.last_zeroed = lams[self.steps - 1] if self.steps else None

    def __call__(self, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        _check_batch(z, self.labels)
        zeroed = None
        if self.steps:
            if self.last_zeroed is None:
                raise _needs_begin("CFG-Zero* with zero_init_steps > 0")
            zeroed = _per_sample(lam <= self.last_zeroed, z)
            alpha, sigma = alpha_sigma(expand_lam(lam, z))
            zero = z / (alpha + sigma)  # x~ = eps~ = z / (alpha + sigma): zero flow velocity
            if bool(zeroed.all()):
                return zero
        if not callable(self.w) and _is_all(self.w, 0.0):
            eps = self.cond(z, lam)
        else:
            eps_c, eps_u = _cond_and_uncond(self.model, z, lam, self.labels, self.null)
            w_now = _w_like(_w_at(self.w, lam), z)
            s = _per_sample(optimized_scale(eps_c, eps_u), z) if self.scaled else 1.0
            eps = (1 + w_now) * eps_c - w_now * (s * eps_u)
        return eps if zeroed is None else torch.where(zeroed, zero, eps)


def cfg_zero_star(model, labels: torch.Tensor, w, *, zero_init_steps: int = 1, scaled: bool = True) -> callable:
    """CFG-Zero* (Fan et al. 2025): the unconditional eps scaled by a least-squares s* per sample, the first steps
    zeroed.

    Fan, Zheng, Yeh and Liu 2025, "CFG-Zero*: Improved classifier-free guidance for flow matching models", Sec. 3.

    - Optimised scale: ``eps~ = (1 + w) eps(z, c) - w s* eps(z)``, the paper's ``s* v_u + omega (v_c - s* v_u)``
      with ``omega = 1 + w``, and ``s* = <eps_c, eps_u> / ||eps_u||^2`` per sample (:func:`optimized_scale`, the
      least-squares fit of the conditional prediction by the unconditional one). The paper scales the velocity of
      a flow model; here it scales the eps, the prediction every network of this package gives (``UNet.forward``
      converts v and EDM outputs to eps), so ``s*`` is fitted between the two eps. ``scaled=False`` forces
      ``s* = 1``: CFG (Eq. 6).
    - Zero-init: the first ``zero_init_steps`` evaluations of the grid (``begin`` reads the grid; lams up to its
      ``zero_init_steps``-th) return the prediction of a zero flow velocity, not a zero eps. A DDIM step is the
      Euler step of the rectified-flow ODE in ``y = z / (alpha + sigma)`` with velocity ``eps~ - x~``
      (``derivations.guidance_frontier.derive_zero_velocity``); a zero velocity is ``x~ = eps~ = z / (alpha +
      sigma)``, so in those steps DDIM keeps ``y`` where it is (and the ancestral sampler draws around it). Those
      evaluations call no network. ``zero_init_steps=0`` zeroes none. A sampler's ``clip_x`` clips this ``x~`` like
      any other (``generate`` clips to [-1, 1] by default), and the move it makes is then no longer zero.

    ``scaled=False`` and ``zero_init_steps=0`` is CFG; ``w = 0`` is the conditional model outside the zeroed steps
    (one pass). Two passes per evaluation otherwise.
    """
    if isinstance(zero_init_steps, bool) or not isinstance(zero_init_steps, int) or zero_init_steps < 0:
        raise ValueError(f"zero_init_steps is how many first steps to zero, a whole number >= 0, got "
                         f"{zero_init_steps!r}")
    if not isinstance(scaled, bool):
        raise ValueError(f"scaled must be True (the optimised scale s*) or False (s* = 1, CFG), got {scaled!r}")
    return _CFGZeroStar(model, labels, w, zero_init_steps, scaled)


# ------------------------------------------------------------------------------------------------ w schedule
def _ramp(lam: torch.Tensor, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    return ((lam - first) / (last - first)).clamp(0.0, 1.0)


#: the shapes ``g(lam)`` of :func:`w_schedule`, each non-decreasing in lam: a linear ramp over the grid from 0 at
#: its first lam to 1 at its last, ``sigmoid(lam)`` (= alpha^2), and the constant 1 (plain CFG)
W_SHAPES = {
    "ramp": _ramp,
    "sigmoid": lambda lam, first, last: torch.sigmoid(lam),
    "constant": lambda lam, first, last: torch.ones_like(lam),
}


class _WSchedule:
    """The eps-callable of :func:`w_schedule`: ``begin`` fixes the normalisation over the grid."""

    def __init__(self, model, labels, w, shape):
        self.w, self.g = w, W_SHAPES[shape]
        self.inner = cfg_eps_fn(model, labels, self.w_at)
        self.grid = None

    def begin(self, lams: torch.Tensor) -> None:
        first, last = lams[0], lams[-1]
        total = self.g(lams[:-1], first, last).sum()  # the evaluated lams: all of the grid but the last
        if not total > 0:
            raise ValueError(f"the schedule's shape is zero at every evaluated lam of this grid ({lams.numel()} "
                             f"lams): use more steps or another shape")
        self.grid = (first, last, (lams.numel() - 1) / total)

    def w_at(self, lam: torch.Tensor):
        if self.grid is None:
            raise _needs_begin("guidance with a w schedule")
        first, last, scale = self.grid
        return self.w * scale * self.g(lam, first, last)

    def __call__(self, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return self.inner(z, lam)


def w_schedule(model, labels: torch.Tensor, w, *, shape: str = "ramp") -> callable:
    """CFG (Eq. 6) whose w grows in lam towards the data end, its mean over the steps the given w (Wang et al. 2024).

    Wang et al. 2024, "Analysis of classifier-free guidance weight schedulers" (TMLR), Sec. 3: increasing schedules
    beat a constant one of the same mean. Beside the guidance interval
    (:func:`minicfg.guidance_variants.interval_guidance`).

    ``w(lam) = c w g(lam)`` with ``g`` a shape of :data:`W_SHAPES` (``"ramp"``, ``"sigmoid"``, ``"constant"``) and
    ``c = n / sum_i g(lam_i)`` over the ``n`` evaluated log-SNRs of the run's grid (every lam but the last), so the
    mean of ``w(lam)`` over the steps is the given ``w`` (``derivations.guidance_frontier.derive_w_schedule``);
    ``begin`` reads the grid. ``"ramp"`` (default) rises linearly in lam from 0 at the grid's first lam to about
    ``2 w`` at its last, Wang et al.'s linear schedule in lam instead of their time; ``"constant"`` is CFG. ``w`` is
    a number or a per-sample tensor (a schedule of a schedule is refused); ``w = 0`` is the conditional model. Two
    passes per evaluation, one where ``w(lam)`` is 0 (the ramp's first step).
    """
    if callable(w) and not torch.is_tensor(w):
        raise ValueError("w_schedule makes w a function of lam itself: give w as a number or a per-sample tensor "
                         "(its mean over the steps)")
    check_w_spec(w)
    if shape not in W_SHAPES:
        raise ValueError(f"shape must be one of {sorted(W_SHAPES)}, got {shape!r}")
    return _WSchedule(model, labels, w, shape)


# ------------------------------------------------------------------------------------------------ ICG
def independent_condition(model, labels: torch.Tensor, w, *, label_seed: int = 0) -> callable:
    """Independent-condition guidance, ICG (Sadat et al. 2025): a random other label in place of the null label.

    Sadat, Kansy, Hilliges and Weber 2025, "No training, no problem: rethinking classifier-free guidance for
    diffusion models", Sec. 3.1: CFG with the unconditional prediction replaced by the conditional prediction at a
    label drawn independently of the sample.

    ``eps~ = (1 + w) eps(z, c) - w eps(z, c')``, ``c'`` drawn per sample, uniformly among the other
    ``num_classes - 1`` labels: ``c' = (c + k) mod K`` with ``k`` uniform in ``1..K-1``. The paper draws ``c'``
    independently of the sample, so it is sometimes the sample's own label, where the difference it guides
    with vanishes; here it never is. Drawn once per built eps-callable from a generator seeded by ``label_seed``
    (``generate`` builds one per batch, so its batches draw the same offsets ``k`` row by row) and kept for every
    step of the run. It needs no null label, so it guides a model trained without label dropout
    (``p_uncond = 0``); with two classes ``c'`` is the other class. ``w = 0`` is the conditional model (one
    pass); two passes per evaluation otherwise.
    """
    num_classes = _num_classes(model)
    if num_classes < 2:
        raise ValueError(f"independent-condition guidance needs at least two classes to draw another label from, "
                         f"the model has {num_classes}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    check_labels(labels, num_classes, allow_null=False)
    if isinstance(label_seed, bool) or not isinstance(label_seed, int):
        raise ValueError(f"label_seed must be an integer (the seed of the other labels), got {label_seed!r}")
    check_w_spec(w)
    generator = torch.Generator().manual_seed(label_seed)
    offset = torch.randint(1, num_classes, tuple(labels.shape), generator=generator)
    other = (labels.cpu() + offset).remainder(num_classes).to(labels.device)

    def eps_fn(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        _check_batch(z, labels)
        w_now = _w_at(w, lam)
        if _is_all(w_now, 0.0):
            return model(z, lam, labels)
        return cfg(*_cond_and_uncond(model, z, lam, labels, other), w_now)

    return eps_fn
