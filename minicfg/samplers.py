"""Samplers: functions of an eps-callable ``eps_fn(z, lam)`` that walk lam upwards (k-diffusion style).

``eps_fn`` takes ``z`` of shape (B, ...) and ``lam`` of shape (B,) and returns eps of the shape of
``z``: an exact score, a network, or a guided combination plug in alike. It may instead return a
:class:`~minicfg.guided.Guided` pair (an eps for denoising, another for renoising) and may have a
``begin(lams)`` method for per-run state (``minicfg.guided`` states the contract). ``lams`` is an increasing
grid from the noise end to the data end, such as :func:`minicfg.schedules.sampling_lams`.

Every sampler has one signature, ``sampler(eps_fn, z, lams, *, generator=None, callback=None,
**options)``, and returns the x-prediction of the last evaluated log-SNR (as the paper's Alg. 2). At
each lam of the grid but the last it calls ``callback(step, lam, z, x_pred)``: the step index, the log-SNR (0-d),
the state the network saw there and its (clipped) x-prediction; trajectories, plots and progress bars hang
off this hook (a sampler of two evaluations per step, :func:`heun`, calls it at the grid's lams only).
Samplers are registered by name in :data:`SAMPLERS` with :func:`register_sampler`;
:func:`run_sampler` calls one by name and rejects options it does not take.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from ._checks import check_lams, check_options
from .diffusion import eps_from_x, expand_lam, posterior, reverse_variance, x_from_eps
from .guided import Guided
from .registry import Registry
from .schedules import alpha_sigma

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "PREVIEW_SAMPLER", "register_sampler", "get_sampler", "run_sampler",
           "network_evaluations", "ancestral", "ddim", "dpm_solver_2m", "heun"]

Sampler = Callable[..., torch.Tensor]
_RESERVED = ("generator", "callback")


def _check_sampler(name: str, fn: Sampler) -> None:
    params = inspect.signature(fn).parameters
    missing = [p for p in _RESERVED if p not in params or params[p].kind is not inspect.Parameter.KEYWORD_ONLY]
    if list(params)[:3] != ["eps_fn", "z", "lams"] or missing:
        raise ValueError(f"sampler {name!r} must have the signature (eps_fn, z, lams, *, generator=None, "
                         f"callback=None, **options)")


#: name -> sampler function, in registration order; `minicfg sample --sampler` offers these names.
SAMPLERS = Registry("sampler", _check_sampler)
#: The sampler used when none is named (the paper's Alg. 2), and the deterministic one of training previews.
DEFAULT_SAMPLER = "ancestral"
PREVIEW_SAMPLER = "ddim"


def register_sampler(name: str, evaluations_per_step: int = 1):
    """Decorator: add a sampler with the standard signature to :data:`SAMPLERS` under ``name``.

    ``evaluations_per_step`` is how many network evaluations it makes per step of the grid (the last step makes
    one): 1 for the samplers of one evaluation per lam, 2 for :func:`heun`. :func:`network_evaluations` reads it.
    """
    if not isinstance(evaluations_per_step, int) or evaluations_per_step < 1:
        raise ValueError(f"evaluations_per_step must be a positive integer, got {evaluations_per_step!r}")

    def add(fn: Sampler) -> Sampler:
        SAMPLERS.add(name, fn)
        fn.evaluations_per_step = evaluations_per_step
        return fn

    return add


def get_sampler(name: str) -> Sampler:
    """The sampler registered as ``name``; a ValueError lists the registered names."""
    return SAMPLERS.lookup(name)


def network_evaluations(name: str, n_steps: int) -> int:
    """Network evaluations per sample of sampler ``name`` on a grid of ``n_steps + 1`` log-SNRs (guidance that
    runs the network on a doubled batch costs that per evaluation): ``k (n_steps - 1) + 1`` for a sampler of
    ``k`` evaluations per step, since the last step only predicts."""
    k = getattr(get_sampler(name), "evaluations_per_step", 1)
    return k * (int(n_steps) - 1) + 1


def run_sampler(name: str, eps_fn, z: torch.Tensor, lams: torch.Tensor, *, generator=None, callback=None,
                **options) -> torch.Tensor:
    """Run the sampler registered as ``name``; options it does not take are a ValueError naming its options."""
    fn = get_sampler(name)
    check_options("sampler", name, fn, options, _RESERVED)
    return fn(eps_fn, z, lams, generator=generator, callback=callback, **options)


def _checked_eps(out, z: torch.Tensor, what: str) -> torch.Tensor:
    """``out`` (the pair's ``what``: "eps" or "renoise") as an eps for ``z``, cast to its dtype; else a ValueError."""
    fix = "an eps-callable returns a tensor of z's shape, or a minicfg.guided.Guided pair of two such tensors"
    if not torch.is_tensor(out):
        raise ValueError(f"eps_fn returned a {type(out).__name__} as its {what}, not a tensor; {fix}")
    if out.shape != z.shape:
        got = "shape" if what == "eps" else f"a {what} of shape"
        raise ValueError(f"eps_fn returned {got} {tuple(out.shape)} for z of shape {tuple(z.shape)}; {fix}")
    return out.to(z.dtype)


def _predict(eps_fn, z: torch.Tensor, lam: torch.Tensor, clip_x):
    """Run the model at one lam; return ``(x~, eps, z)`` for the step: the x-prediction and the state and eps the
    step moves with, ``z = alpha x~ + sigma eps`` (up to rounding) also after clipping.

    For a plain eps the step's ``z`` is the state itself. For a :class:`~minicfg.guided.Guided` pair, ``x~`` comes
    from its ``eps`` and the state's noise is swapped for its ``renoise``: ``z + sigma (renoise - eps)``, which is
    ``alpha x~ + sigma renoise``, with eps ``renoise`` (written as a shift, so ``renoise == eps`` leaves every bit
    of the plain path). Clipping then moves ``x~`` and re-derives the eps from the step's state, as for a plain eps.
    """
    lam_b = lam.expand(z.shape[0])
    out = eps_fn(z, lam_b)
    renoise = None
    if isinstance(out, Guided):
        out, renoise = out.eps, _checked_eps(out.renoise, z, "renoise")
    eps = _checked_eps(out, z, "eps")
    x = x_from_eps(z, lam_b, eps)
    if renoise is not None:
        _, sigma = alpha_sigma(expand_lam(lam_b, z))
        z, eps = z + sigma * (renoise - eps), renoise
    if clip_x is not None:
        x = x.clamp(*clip_x)
        eps = eps_from_x(z, lam_b, x)
    return x, eps, z


def _walk(eps_fn, z: torch.Tensor, lams: torch.Tensor, clip_x, callback, step) -> torch.Tensor:
    """The loop every sampler shares: at each lam of the grid predict ``x~`` and ``eps~``, report them to
    ``callback``, and (except after the last evaluation) move ``z`` to the next lam with
    ``step(i, z, x~, eps~, lam, lam_next, predict) -> z``. Returns the last ``x~``.

    Before the first evaluation it calls ``eps_fn.begin(lams)`` if the eps-callable has one (per-run state,
    ``minicfg.guided``). ``predict(z, lam) -> (x~, eps~, z)`` evaluates the network once more, as the loop does
    (clipping, a ``Guided`` pair re-expressed), for a step of more than one evaluation (:func:`heun`); the
    callback is not called for those: it sees the grid's lams only.
    """
    lams = check_lams(lams).to(device=z.device, dtype=z.dtype)
    begin = getattr(eps_fn, "begin", None)
    if begin is not None:
        begin(lams)

    def predict(z_at, lam):
        return _predict(eps_fn, z_at, lam, clip_x)

    x = z
    n = lams.numel() - 1
    for i in range(n):
        x, eps, z_step = predict(z, lams[i])
        if callback is not None:
            callback(i, lams[i], z, x)
        if i == n - 1:
            break
        z = step(i, z_step, x, eps, lams[i], lams[i + 1], predict)
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

    def step(i, z, x, eps, lam, lam_next, predict):
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

    def step(i, z, x, eps, lam, lam_next, predict):
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

    def step(i, z, x, eps, lam, lam_next, predict):
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


@register_sampler("heun", evaluations_per_step=2)
def heun(
    eps_fn,
    z: torch.Tensor,
    lams: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    clip_x: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Heun's second-order method on the probability-flow ODE in log-SNR time: a DDIM step, corrected.

    In the half log-SNR ``s = lam / 2`` the probability-flow ODE is linear in ``y = z / sigma`` with the data
    prediction as its source, ``dy/ds = e^s x~(z, lam)`` (as in :func:`dpm_solver_2m`), so exactly
    ``z' = (sigma' / sigma) z + sigma' * integral of e^u x~ du`` from ``s`` to ``s' = s + h``. Taking ``x~``
    constant over the step (its value at the start) gives DDIM, ``z' = (sigma' / sigma) z + alpha' (1 - e^-h) x~``,
    the Euler step of this exponential integrator. Heun's method takes that step as a predictor ``z^``, evaluates
    ``x~' = x~(z^, lam')`` at its end, and takes the step again with the trapezoidal average of the two (the
    factor ``e^u`` still integrated exactly):

        ``z' = (sigma' / sigma) z + alpha' (1 - e^-h) (x~ + x~') / 2``

    Its error per step is O(h^3), DDIM's O(h^2), so at the data end its error falls as 1/n^2 with the number of
    steps instead of 1/n (measured in ``tests/test_heun.py``). Two network evaluations per step, one on the last
    (which only predicts): ``2 n - 1`` for a grid of ``n + 1`` log-SNRs (:func:`network_evaluations`).
    ``callback`` is called at the grid's lams only (``n`` times, like every sampler), not after the predictor's
    evaluations. A :class:`~minicfg.guided.Guided` pair's renoise enters through the step's state (``z`` above is
    ``alpha x~ + sigma renoise``); at the predictor's end only its x-prediction is used. Deterministic
    (``generator`` is unused); returns the final prediction ``x~``.
    """

    def step(i, z, x, eps, lam, lam_next, predict):
        h = (lam_next - lam) / 2
        _, sigma = alpha_sigma(lam)
        alpha_next, sigma_next = alpha_sigma(lam_next)
        decay, gain = sigma_next / sigma, -alpha_next * torch.expm1(-h)
        x_end, _, _ = predict(decay * z + gain * x, lam_next)  # the DDIM (Euler) step's end point
        return decay * z + gain * (x + x_end) / 2

    return _walk(eps_fn, z, lams, clip_x, callback, step)
