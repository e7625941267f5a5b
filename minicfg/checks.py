"""Autograder checks for the exercises in the notebooks: one ``check_<exercise>(fn)`` per exercise.

Each check calls the student's ``fn`` on several inputs (extreme log-SNRs, a batch of one, non-square images,
float64) and compares the result with the library. A failure is an AssertionError that names the input, shows
the expected and actual values, and gives a hint: the specific mistake when the result matches a known wrong
formula (alpha^2 where alpha was meant, w where 1 + w was meant, lam and lam' swapped, ...), otherwise the usual
ones. A function that still raises nbgrader's ``NotImplementedError()`` stub gets a one-line "not implemented
yet". The nbgrader test cells of the notebooks call these (``docs/instructors.md``); each prints one line when
every input passes.

The answer cannot come from the library: each check names the library functions its exercise re-implements
(``reimplements``), and while the student's function runs, their code is swapped for a tripwire that raises (see
:func:`_tripwires`). So importing the library's function, wrapping it, or calling it through its module scores
nothing, with a message that says so, while the helpers an exercise hands the student (``schedules.alpha_sigma``
inside ``q_sample``, ``diffusion.expand_lam``, ...) still work.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from . import diffusion, guidance, samplers, schedules
from .diffusion import expand_lam

__all__ = [
    "EXERCISES",
    "check_alpha_sigma",
    "check_q_sample",
    "check_log_snr_cosine",
    "check_posterior",
    "check_ancestral_step",
    "check_implicit_classifier_grad",
    "check_cfg_combination",
    "check_classifier_guided_eps",
    "check_label_dropout_loss",
    "check_guidance_scale_to_w",
    "check_ddim_step",
    "check_guided_ddim",
    "check_fid_from_stats",
    "check_precision_recall_knn",
    "check_per_class_recognition",
    "check_interval_cfg",
    "check_zero_shot_predict",
]

#: The hint when a function raises: most errors here are tensors of different shapes meeting.
SHAPES = ("lam (and a per-sample w) has one value per sample, shape (B,): reshape it to (B, 1, ..., 1) to "
          "broadcast over the images or points (minicfg.diffusion.expand_lam(lam, x) does), and use torch functions")
#: (rtol, atol) of the comparison by dtype: float32 round-off of a different but correct formula passes.
TOLERANCE = {torch.float32: (1e-4, 1e-6), torch.float64: (1e-9, 1e-12)}


@dataclass(frozen=True)
class Case:
    """One input: a name for the messages, the positional arguments of the exercise's function, and optionally
    the expected result (by default the check's reference function of the arguments)."""

    name: str
    args: tuple
    expected: Callable | None = None


def _tensor(shape, seed: int, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _describe(value) -> str:
    if torch.is_tensor(value):
        if value.numel() <= 4:
            values = [round(v, 4) for v in value.flatten().tolist()]
            return f"tensor({values}, shape {tuple(value.shape)}, {value.dtype})"
        return f"tensor of shape {tuple(value.shape)}, {value.dtype}"
    if callable(value):
        return getattr(value, "__name__", "a function")
    return repr(value)


def _clone(args: tuple) -> tuple:
    """Fresh copies, so a function that writes into its inputs cannot change the reference's."""
    return tuple(a.clone() if torch.is_tensor(a) else a for a in args)


def _as_tuple(value, names: tuple[str, ...]):
    return value if len(names) > 1 else (value,)


def _mismatch(expected: tuple, actual, names: tuple[str, ...], tol: tuple[float, float]) -> str | None:
    """None when ``actual`` matches ``expected``, else what is wrong with it (one line or a short block)."""
    if len(names) > 1 and not (isinstance(actual, tuple | list) and len(actual) == len(names)):
        return f"returned {type(actual).__name__}; expected a tuple ({', '.join(names)})"
    for name, exp, act in zip(names, expected, _as_tuple(actual, names), strict=True):
        label = f"{name}: " if len(names) > 1 else ""
        if not torch.is_tensor(act):
            return f"{label}returned {type(act).__name__}, expected a tensor of shape {tuple(exp.shape)}"
        if act.shape != exp.shape:
            if name == "var" and torch.broadcast_shapes(act.shape, exp.shape) == exp.shape:
                act = act.expand_as(exp)  # a variance of shape (B, 1, ...) that broadcasts is as good
            else:
                return f"{label}returned shape {tuple(act.shape)}, expected {tuple(exp.shape)}"
        if act.dtype != exp.dtype:
            return f"{label}returned dtype {act.dtype}, expected {exp.dtype} (keep the dtype of the inputs)"
        rtol, atol = tol
        close = torch.isclose(act.detach(), exp, rtol=rtol, atol=atol)
        if not bool(close.all()):
            diff = torch.where(close, 0.0, (act.detach() - exp).abs().nan_to_num(math.inf))
            at = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
            where = f" at index {at}" if at else ""
            return (f"{label}expected {exp[at].item():.6g}{where}, got {act[at].item():.6g} "
                    f"({int((~close).sum())} of {close.numel()} values differ)\n"
                    f"    expected: {_preview(exp)}\n    actual:   {_preview(act.detach())}")
    return None


def _preview(t: torch.Tensor) -> str:
    values = ", ".join(f"{v:.5g}" for v in t.flatten()[:6].tolist())
    return f"[{values}{', ...' if t.numel() > 6 else ''}]"


def _library_function(spec: str) -> types.FunctionType:
    """The function named by ``"module.path:function"`` (the innermost one, under any ``functools.wraps``)."""
    module, _, name = spec.partition(":")
    fn = getattr(importlib.import_module(module), name, None) if name else None
    fn = inspect.unwrap(fn) if callable(fn) else fn
    if not isinstance(fn, types.FunctionType) or fn.__closure__:
        raise ValueError(f"reimplements={spec!r}: expected 'module.path:function' naming a module-level Python "
                         f"function, got {fn!r}")
    return fn


def _refusal(exercise: str, spec: str) -> str:
    return (f"write {exercise} yourself; the library's own {spec.replace(':', '.')} is not allowed here: this "
            f"exercise re-implements it (torch and the helpers the exercise names are fine)")


def _delegated_to(fn, library: dict[str, types.FunctionType]) -> str | None:
    """The spec of the library function that ``fn`` is (itself, a functools.partial or a functools.wraps wrapper of
    it, a bound method or a function made from its code), else None."""
    codes = {spec: lib.__code__ for spec, lib in library.items()}
    for _ in range(100):  # a chain of wrappers ends; a cycle of __wrapped__ must not hang the check
        for spec, lib in library.items():
            if fn is lib or getattr(fn, "__code__", None) is codes[spec]:
                return spec
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        elif hasattr(fn, "__func__"):
            fn = fn.__func__
        else:
            return None
    return None


def _tripwires(exercise: str, library: dict[str, types.FunctionType]) -> dict[types.CodeType, str]:
    """{tripwire code: spec}: for each library function, code that raises a RuntimeError saying it is refused."""
    trips = {}
    for spec, lib in library.items():
        namespace: dict = {}
        source = f"def {lib.__name__}(*args, **kwargs):\n    raise RuntimeError({_refusal(exercise, spec)!r})\n"
        exec(compile(source, f"<tripwire for {spec}>", "exec"), namespace)
        trips[namespace[lib.__name__].__code__] = spec
    return trips


@contextmanager
def _tripped_library(library: dict[str, types.FunctionType], trips: dict[types.CodeType, str]) -> Iterator[None]:
    """While the block runs, each library function runs its tripwire instead of its own code.

    Swapping the function's ``__code__`` (rather than the module attribute) catches every way of reaching it: an
    import made before the check, an alias, a call through the module, and library functions that call it inside.
    The original code is restored on the way out, whatever happens in the block.
    """
    originals = {spec: lib.__code__ for spec, lib in library.items()}
    try:
        for code, spec in trips.items():
            library[spec].__code__ = code
        yield
    finally:
        for spec, lib in library.items():
            lib.__code__ = originals[spec]


def _tripped(err: BaseException, trips: dict) -> str | None:
    """The spec of the tripwire that raised ``err`` or an error it caused, else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in trips:
                return trips[tb.tb_frame.f_code]
            tb = tb.tb_next
        err = err.__cause__ or err.__context__
    return None


def _check(exercise: str, fn, cases: list[Case], reference: Callable | None, names: tuple[str, ...],
           mistakes: list[tuple[str, Callable]], shapes: str = SHAPES, tolerance: dict | None = None,
           reimplements: tuple[str, ...] = ()) -> None:
    """Run ``fn`` on every case and compare with ``reference``; the AssertionError of the first failure.

    ``mistakes`` are (hint, wrong formula) pairs; ``shapes`` is the hint when the function raises an error;
    ``tolerance`` replaces entries of :data:`TOLERANCE`. ``reimplements`` names the library functions
    (``"module.path:function"``) the exercise re-implements: ``fn`` may not be one of them, and they raise while
    ``fn`` runs (:func:`_tripwires`). The expected results and the known mistakes are computed outside that window.
    """
    tolerance = {**TOLERANCE, **(tolerance or {})}
    params = _parameters(fn, len(cases[0].args))
    if not callable(fn):
        raise AssertionError(f"{exercise}: pass the function itself, e.g. check_{exercise}({exercise}); got {fn!r}")
    library = {spec: _library_function(spec) for spec in reimplements}
    spec = _delegated_to(fn, library)
    if spec is not None:
        raise AssertionError(f"{exercise}: {_refusal(exercise, spec)}")
    trips = _tripwires(exercise, library)
    for case in cases:
        expected = _as_tuple(case.expected() if case.expected else reference(*_clone(case.args)), names)
        dtype = next((a.dtype for a in case.args if torch.is_tensor(a) and a.is_floating_point()), torch.float32)
        inputs = ", ".join(f"{p}={_describe(a)}" for p, a in zip(params, case.args, strict=False))
        args = _clone(case.args)
        try:
            with _tripped_library(library, trips):
                actual = fn(*args)
        except NotImplementedError:
            raise AssertionError(f"{exercise} is not implemented yet: replace `raise NotImplementedError()` in the "
                                 f"cell that defines it with your code, run that cell, then this one") from None
        except KeyboardInterrupt:  # nbgrader interrupts a cell that runs past its time limit
            raise AssertionError(f"{exercise} was interrupted on the input '{case.name}' ({inputs}): it ran past the "
                                 f"time limit of a cell (an endless loop?) or was stopped by hand") from None
        except Exception as err:  # noqa: BLE001 (any error of the student's code becomes one readable message)
            spec = _tripped(err, trips)
            if spec is not None:
                raise AssertionError(f"{exercise}: {_refusal(exercise, spec)}") from None
            raise AssertionError(f"{exercise} raised {type(err).__name__} on the input '{case.name}' ({inputs}): "
                                 f"{err}\n  hint: {shapes}") from None
        tol = tolerance[dtype] if dtype in tolerance else tolerance[torch.float32]
        problem = _mismatch(expected, actual, names, tol)
        if problem is None:
            continue
        hint = next((h for h, wrong in mistakes if _mismatch(_as_tuple(wrong(*_clone(case.args)), names), actual,
                                                             names, tol) is None), None)
        hint = f"your result matches a known mistake: {hint}" if hint else _usual(mistakes)
        raise AssertionError(f"{exercise}: wrong result on the input '{case.name}'\n  inputs: {inputs}\n"
                             f"  {problem}\n  hint: {hint}")
    print(f"{exercise}: all {len(cases)} inputs pass")


def _parameters(fn, n: int) -> list[str]:
    """The names of ``fn``'s first ``n`` parameters, for the messages (arg0, arg1, ... when it has none)."""
    try:
        names = list(inspect.signature(fn).parameters)[:n]
    except (TypeError, ValueError):
        names = []
    return names if len(names) == n else [f"arg{i}" for i in range(n)]


def _usual(mistakes) -> str:
    return "the usual mistakes: " + "; ".join(h for h, _ in mistakes)


def _sig(lam, like: torch.Tensor):
    """(alpha, sigma) at ``lam`` of shape (B,), shaped to broadcast over ``like``."""
    return schedules.alpha_sigma(expand_lam(lam, like))


def _lams(*values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# -- notebook 01 --------------------------------------------------------------------------------------------------
def check_alpha_sigma(fn) -> None:
    """``fn(lam) -> (alpha, sigma)``, ``alpha^2 = sigmoid(lam)``, ``sigma^2 = sigmoid(-lam)``, accurate in both tails.

    Compared to a relative error of 1e-4 in float32 (no absolute slack: sigma ~ 3e-7 at lam = 30 counts)."""
    cases = [Case("lam = 0", (_lams(0.0),)), Case("a batch of one", (_lams(1.5),)),
             Case("moderate lam", (_lams(-6.0, -1.0, 2.0, 5.0),)),
             Case("extreme lam: +-20 and +-30, float32", (_lams(-30.0, -20.0, 20.0, 30.0),)),
             Case("float64", (torch.linspace(-25, 25, 11, dtype=torch.float64),))]
    mistakes = [
        ("alpha^2 used where alpha was meant: alpha = sqrt(sigmoid(lam)), not sigmoid(lam)",
         lambda lam: (torch.sigmoid(lam), torch.sigmoid(-lam))),
        ("lam order reversed: large lam is the data end, so alpha^2 = sigmoid(lam) and sigma^2 = sigmoid(-lam)",
         lambda lam: (torch.sigmoid(-lam).sqrt(), torch.sigmoid(lam).sqrt())),
        ("sigma = sqrt(1 - alpha^2) rounds to 0 at large lam in float32; compute sigma^2 as sigmoid(-lam)",
         lambda lam: (torch.sigmoid(lam).sqrt(), (1 - torch.sigmoid(lam)).sqrt())),
    ]
    _check("alpha_sigma", fn, cases, schedules.alpha_sigma, ("alpha", "sigma"), mistakes,
           tolerance={torch.float32: (1e-4, 0.0), torch.float64: (1e-9, 0.0)},
           reimplements=("minicfg.schedules:alpha_sigma",))


def _image_cases(seed: int) -> list[tuple[str, tuple, torch.dtype, tuple]]:
    """(name, image shape, dtype, lams) of the image-shaped inputs most checks share."""
    return [("a batch of one", (1, 1, 4, 4), torch.float32, (0.5,)),
            ("non-square images (3 x 5 x 7)", (4, 3, 5, 7), torch.float32, (-3.0, -1.0, 1.0, 4.0)),
            ("extreme lam: -20 and +20", (2, 1, 3, 3), torch.float32, (-20.0, 20.0)),
            ("float64", (3, 2, 4, 6), torch.float64, (-7.0, 0.0, 7.0))]


def check_q_sample(fn) -> None:
    """``fn(x, lam, eps) -> z = alpha_lam x + sigma_lam eps``; ``lam`` has shape (B,), one log-SNR per image."""
    cases = [Case(name, (_tensor(shape, 1, dtype), _lams(*lams, dtype=dtype), _tensor(shape, 2, dtype)))
             for name, shape, dtype, lams in _image_cases(0)]
    mistakes = [
        ("alpha^2 used where alpha was meant: z = alpha x + sigma eps with alpha = sqrt(sigmoid(lam))",
         lambda x, lam, eps: expand_lam(torch.sigmoid(lam), x) * x + expand_lam(torch.sigmoid(-lam), x) * eps),
        ("lam order reversed (alpha and sigma swapped): the signal scale alpha grows with lam",
         lambda x, lam, eps: _sig(lam, x)[1] * x + _sig(lam, x)[0] * eps),
    ]
    _check("q_sample", fn, cases, diffusion.q_sample, ("z",), mistakes, reimplements=("minicfg.diffusion:q_sample",))


def check_log_snr_cosine(fn) -> None:
    """``fn(u, lam_min, lam_max) -> lam = -2 log tan(a u + b)``, with ``u = 0`` giving ``lam_max`` (data)."""
    u = torch.linspace(0, 1, 9, dtype=torch.float64)
    cases = [Case("the end points u = 0 and u = 1", (torch.tensor([0.0, 1.0], dtype=torch.float64), -20.0, 20.0)),
             Case("a batch of one", (torch.tensor([0.5], dtype=torch.float64), -20.0, 20.0)),
             Case("float32, u in [0.1, 0.9]", (torch.linspace(0.1, 0.9, 5), -20.0, 20.0)),
             Case("float64 grid", (u, -20.0, 20.0)),
             Case("another range: lam in [-10, 5]", (u, -10.0, 5.0))]

    def swapped(u, lam_min, lam_max):
        return schedules.log_snr_cosine(1 - u, lam_min, lam_max)

    def no_factor(u, lam_min, lam_max):
        return schedules.log_snr_cosine(u, lam_min, lam_max) / 2

    mistakes = [("lam order reversed: u = 0 must give lam_max (data) and u = 1 lam_min (noise); "
                 "b = arctan(exp(-lam_max / 2)), a = arctan(exp(-lam_min / 2)) - b", swapped),
                ("lam = -2 log tan(a u + b): the factor -2 is missing or wrong", no_factor)]
    _check("log_snr_cosine", fn, cases, schedules.log_snr_cosine, ("lam",), mistakes,
           reimplements=("minicfg.schedules:log_snr_cosine",))


def check_posterior(fn) -> None:
    """``fn(z, x, lam, lam_next) -> (mean, var)`` of ``q(z_lam_next | z_lam, x)`` for ``lam < lam_next`` (Eq. 3)."""
    specs = [("a batch of one", (1, 1, 4, 4), torch.float32, (-1.0,), (1.5,)),
             ("non-square images (3 x 5 x 7)", (3, 3, 5, 7), torch.float32, (-4.0, 0.0, 2.0), (-3.0, 1.0, 6.0)),
             ("extreme lam: -20 -> -19 and 19 -> 20", (2, 1, 3, 3), torch.float32, (-20.0, 19.0), (-19.0, 20.0)),
             ("float64", (3, 2, 4, 6), torch.float64, (-7.0, 0.0, 5.0), (-6.5, 0.25, 9.0))]
    cases = [Case(name, (_tensor(shape, 3, dtype), _tensor(shape, 4, dtype), _lams(*lo, dtype=dtype),
                         _lams(*hi, dtype=dtype))) for name, shape, dtype, lo, hi in specs]

    def swapped(z, x, lam, lam_next):  # the formula with lam and lam' exchanged (not a valid order for the library)
        a, s = _sig(lam, z)
        a_n, _ = _sig(lam_next, z)
        r = torch.exp(expand_lam(lam_next - lam, z))
        return r * (a / a_n) * z + (1 - r) * a * x, ((1 - r) * s**2).expand_as(z)

    def var_at_lam(z, x, lam, lam_next):
        mean, _ = diffusion.posterior(z, x, lam, lam_next)
        return mean, (-torch.expm1(expand_lam(lam - lam_next, z)) * _sig(lam, z)[1] ** 2).expand_as(z)

    def squares(z, x, lam, lam_next):
        a, s = _sig(lam, z)
        a_n, s_n = _sig(lam_next, z)
        r = torch.exp(expand_lam(lam - lam_next, z))
        return r * (a_n / a) ** 2 * z + (1 - r) * a_n**2 * x, ((1 - r) * s_n**2).expand_as(z)

    mistakes = [("lam order reversed: lam < lam_next, the ratio is exp(lam - lam_next) and the mean's scales are "
                 "alpha_lam_next / alpha_lam and alpha_lam_next", swapped),
                ("the variance uses sigma_lam^2; Eq. 3 has sigma_lam_next^2 (the forward Eq. 2 has sigma_lam^2)",
                 var_at_lam),
                ("alpha^2 used where alpha was meant in the mean", squares)]
    _check("posterior", fn, cases, diffusion.posterior, ("mean", "var"), mistakes,
           reimplements=("minicfg.diffusion:posterior",))


# -- notebook 02 --------------------------------------------------------------------------------------------------
def _ancestral_step(z, eps, lam, lam_next, noise, v=0.3):
    """The reference: Eq. 3's mean at ``x~ = (z - sigma eps) / alpha`` plus the interpolated standard deviation."""
    mean, _ = diffusion.posterior(z, diffusion.x_from_eps(z, lam, eps), lam, lam_next)
    return mean + expand_lam(diffusion.reverse_variance(lam, lam_next, v).sqrt(), z) * noise


def check_ancestral_step(fn) -> None:
    """``fn(z, eps, lam, lam_next, noise, v) -> z_next``: one step of the paper's ancestral sampler (Alg. 2)."""
    specs = [("a batch of one, v = 0.3", (1, 1, 4, 4), torch.float32, (-2.0,), (-1.5,), 0.3),
             ("non-square images, v = 0", (3, 3, 5, 7), torch.float32, (-4.0, 0.0, 2.0), (-3.0, 1.0, 6.0), 0.0),
             ("extreme lam, v = 1", (2, 1, 3, 3), torch.float32, (-20.0, 15.0), (-18.0, 20.0), 1.0),
             ("float64, 2-D points, v = 0.3", (4, 2), torch.float64, (-6.0, -1.0, 0.0, 3.0), (-5.0, 0.0, 2.0, 3.5),
              0.3)]
    cases = [Case(name, (_tensor(shape, 5, dtype), _tensor(shape, 6, dtype), _lams(*lo, dtype=dtype),
                         _lams(*hi, dtype=dtype), _tensor(shape, 7, dtype), v))
             for name, shape, dtype, lo, hi, v in specs]

    def variance_as_std(z, eps, lam, lam_next, noise, v=0.3):
        mean = _ancestral_step(z, eps, lam, lam_next, torch.zeros_like(noise), v)
        return mean + expand_lam(diffusion.reverse_variance(lam, lam_next, v), z) * noise

    def v_swapped(z, eps, lam, lam_next, noise, v=0.3):
        return _ancestral_step(z, eps, lam, lam_next, noise, 1 - v)

    def no_noise(z, eps, lam, lam_next, noise, v=0.3):
        return _ancestral_step(z, eps, lam, lam_next, torch.zeros_like(noise), v)

    mistakes = [("the variance used where its square root, the standard deviation, was meant", variance_as_std),
                ("v and 1 - v exchanged: v = 0 is the posterior variance of Eq. 3, v = 1 the forward one of Eq. 2",
                 v_swapped),
                ("the fresh noise is missing: add sqrt(variance) * noise to the mean", no_noise)]
    # the step itself: the sampler that takes it and this module's reference (x_from_eps, posterior and
    # reverse_variance are the pieces the exercise hands the student)
    _check("ancestral_step", fn, cases, _ancestral_step, ("z_next",), mistakes,
           reimplements=("minicfg.samplers:ancestral", "minicfg.checks:_ancestral_step"))


# -- notebook 03 --------------------------------------------------------------------------------------------------
def _pair_cases() -> list[Case]:
    """(eps_cond, eps_uncond, lam) inputs: 2-D points as in notebook 03, images, extreme lam, float64."""
    specs = [("a batch of one (a 2-D point)", (1, 2), torch.float32, (0.0,)),
             ("non-square images (3 x 5 x 7)", (3, 3, 5, 7), torch.float32, (-3.0, 0.0, 3.0)),
             ("extreme lam: -20 and +20", (2, 1, 3, 3), torch.float32, (-20.0, 20.0)),
             ("float64 2-D points", (5, 2), torch.float64, (-10.0, -2.0, 0.0, 2.0, 10.0))]
    return [Case(name, (_tensor(shape, 8, dtype), _tensor(shape, 9, dtype), _lams(*lams, dtype=dtype)))
            for name, shape, dtype, lams in specs]


def check_implicit_classifier_grad(fn) -> None:
    """``fn(eps_cond, eps_uncond, lam) -> grad_z log p^i(c | z) = -(eps_cond - eps_uncond) / sigma_lam``."""

    def reference(e_c, e_u, lam):
        return guidance.implicit_classifier_grad(e_c, e_u, _sig(lam, e_c)[1])

    mistakes = [("the sign: eps ~ -sigma grad log p, so the gradient is MINUS (eps_cond - eps_uncond) / sigma",
                 lambda e_c, e_u, lam: -reference(e_c, e_u, lam)),
                ("multiplied by sigma where dividing by sigma was meant (eps = -sigma grad, so grad = -eps / sigma)",
                 lambda e_c, e_u, lam: -(e_c - e_u) * _sig(lam, e_c)[1]),
                ("sigma^2 used where sigma was meant: sigma = sqrt(sigmoid(-lam))",
                 lambda e_c, e_u, lam: -(e_c - e_u) / _sig(lam, e_c)[1] ** 2),
                ("alpha used where sigma was meant: the score is -eps / sigma",
                 lambda e_c, e_u, lam: -(e_c - e_u) / _sig(lam, e_c)[0])]
    _check("implicit_classifier_grad", fn, _pair_cases(), reference, ("grad",), mistakes,
           reimplements=("minicfg.guidance:implicit_classifier_grad",))


def check_cfg_combination(fn) -> None:
    """``fn(eps_cond, eps_uncond, w) -> (1 + w) eps_cond - w eps_uncond`` (Eq. 6); ``w`` a number or (B,) tensor."""
    pairs = _pair_cases()
    cases = [Case("w = 0 (the conditional model)", pairs[1].args[:2] + (0.0,)),
             Case("w = -1 (the unconditional model)", pairs[1].args[:2] + (-1.0,)),
             Case("a batch of one, w = 3", pairs[0].args[:2] + (3.0,)),
             Case("non-square images, one w per sample", pairs[1].args[:2] + (torch.tensor([0.0, 1.0, 4.0]),)),
             Case("float64, w = 0.5", pairs[3].args[:2] + (0.5,))]

    mistakes = [("w used where 1 + w was meant: eps~ = (1 + w) eps_cond - w eps_uncond, so w = 0 must give eps_cond "
                 "(w is not the 'guidance scale' 1 + w of other libraries)",
                 lambda e_c, e_u, w: _w(w, e_c) * e_c - (_w(w, e_c) - 1) * e_u),
                ("eps_cond and eps_uncond exchanged", lambda e_c, e_u, w: guidance.cfg(e_u, e_c, w))]
    _check("cfg_combination", fn, cases, guidance.cfg, ("eps",), mistakes, reimplements=("minicfg.guidance:cfg",))


def _w(w, like: torch.Tensor):
    return expand_lam(w, like) if torch.is_tensor(w) else w


# -- notebook 04 --------------------------------------------------------------------------------------------------
def check_classifier_guided_eps(fn) -> None:
    """``fn(eps, grad_log_prob, lam, w) -> eps - w sigma_lam grad_log_prob`` (Eq. 4); ``w`` a number."""
    pairs = _pair_cases()
    cases = [Case(c.name + f", w = {w:g}", c.args[:2] + (c.args[2], w)) for c, w in zip(pairs, (1.0, 3.0, 2.0, 0.5),
                                                                                        strict=True)]
    cases.insert(0, Case("w = 0 (no guidance)", pairs[1].args + (0.0,)))

    def reference(eps, grad, lam, w):
        return guidance.classifier_guided_eps(eps, grad, _sig(lam, eps)[1], w)

    mistakes = [("the sign: eps~ = eps MINUS w sigma grad log p(c | z), since eps ~ -sigma times the score",
                 lambda eps, grad, lam, w: eps + w * _sig(lam, eps)[1] * grad),
                ("alpha used where sigma was meant: the gradient enters in units of noise, times sigma_lam",
                 lambda eps, grad, lam, w: eps - w * _sig(lam, eps)[0] * grad),
                ("sigma^2 used where sigma was meant",
                 lambda eps, grad, lam, w: eps - w * _sig(lam, eps)[1] ** 2 * grad),
                ("sigma is missing: eps~ = eps - w sigma grad", lambda eps, grad, lam, w: eps - w * grad)]
    _check("classifier_guided_eps", fn, cases, reference, ("eps",), mistakes,
           reimplements=("minicfg.guidance:classifier_guided_eps",))


# -- notebook 05 --------------------------------------------------------------------------------------------------
def _toy_model(z, lam, labels):
    """A fixed stand-in for the network, ``model(z, lam, labels) -> eps``, that tells every label (and null) apart."""
    shape = (-1,) + (1,) * (z.ndim - 1)
    return 0.6 * z + 0.05 * lam.reshape(shape) + 0.3 * (labels.to(z.dtype) + 1).reshape(shape)


def _dropout_case(name, shape, dtype, seed, p_uncond, num_classes) -> Case:
    """The inputs that ``eps_loss`` draws from a generator seeded with ``seed``, in its order (u, hence lam; eps;
    the dropout mask), and as the expected result ``eps_loss`` itself with that generator."""
    g = torch.Generator().manual_seed(seed)
    x = _tensor(shape, seed + 100, dtype)
    labels = torch.arange(shape[0]) % num_classes
    lam = schedules.log_snr_cosine(torch.rand(shape[0], generator=g, dtype=dtype))
    eps = torch.randn(shape, generator=g, dtype=dtype)
    drop = torch.rand(shape[0], generator=g) < p_uncond

    def expected():
        return diffusion.eps_loss(_toy_model, x, labels, p_uncond, num_classes,
                                  generator=torch.Generator().manual_seed(seed))

    return Case(name, (_toy_model, x, labels, lam, eps, drop, num_classes), expected)


def check_label_dropout_loss(fn) -> None:
    """``fn(model, x, labels, lam, eps, drop, num_classes) -> loss``: Alg. 1's loss with the dropped labels made null.

    The expected loss is ``diffusion.eps_loss`` drawing the same ``lam``, ``eps`` and dropout mask ``drop``.
    """
    cases = [_dropout_case("a batch of one, label dropped", (1, 1, 4, 4), torch.float32, 2, 1.0, 10),
             _dropout_case("non-square images, half the labels dropped", (6, 3, 5, 7), torch.float32, 3, 0.5, 10),
             _dropout_case("no label dropped", (4, 1, 6, 6), torch.float32, 4, 0.0, 3),
             _dropout_case("float64, 3 classes", (8, 2, 3, 5), torch.float64, 5, 0.4, 3)]

    def loss(model, x, labels, lam, eps, target):
        z = diffusion.q_sample(x, lam, eps)
        return (model(z, lam, labels).float() - target).pow(2).mean()

    null = lambda labels, drop, num_classes: torch.where(drop, torch.full_like(labels, num_classes), labels)
    mistakes = [("the labels must be dropped: where drop is True the label becomes the null label num_classes",
                 lambda m, x, y, lam, eps, drop, k: loss(m, x, y, lam, eps, eps)),
                ("the null label is the index num_classes (the extra row of the embedding), not 0",
                 lambda m, x, y, lam, eps, drop, k: loss(m, x, torch.where(drop, 0, y), lam, eps, eps)),
                ("the model predicts the noise eps, so the loss compares its output with eps, not with x",
                 lambda m, x, y, lam, eps, drop, k: loss(m, x, null(y, drop, k), lam, eps, x)),
                ("the model sees z = alpha x + sigma eps, not x",
                 lambda m, x, y, lam, eps, drop, k: (m(x, lam, null(y, drop, k)).float() - eps).pow(2).mean())]
    # eps_loss rounds the prediction to float32 (for bf16 training), so float64 agrees to float32's precision
    # drop_labels makes the dropped labels null, the heart of the exercise; q_sample is a helper handed to it
    _check("label_dropout_loss", fn, cases, None, ("loss",), mistakes,
           tolerance={torch.float64: TOLERANCE[torch.float32]},
           reimplements=("minicfg.diffusion:eps_loss", "minicfg.diffusion:drop_labels",
                         "minicfg.predictions:prediction_loss"))


# -- notebook 06 --------------------------------------------------------------------------------------------------
def check_guidance_scale_to_w(fn) -> None:
    """``fn(guidance_scale) -> w = guidance_scale - 1``: other libraries' ``guidance_scale`` is the paper's 1 + w."""
    cases = [Case("guidance_scale = 1 (w = 0, the conditional model)", (torch.tensor([1.0]),)),
             Case("diffusers' default 7.5 and a few more", (torch.tensor([7.5, 1.3, 2.0, 4.0]),)),
             Case("guidance_scale = 0 (w = -1, the unconditional model)", (torch.tensor([0.0]),)),
             Case("float64", (torch.linspace(0, 10, 6, dtype=torch.float64),))]
    mistakes = [("guidance_scale is 1 + w, not w: subtract 1 (guidance_scale = 1 is w = 0, the conditional model)",
                 lambda s: s.clone()),
                ("the conversion goes the wrong way: guidance_scale = 1 + w, so w = guidance_scale - 1, not + 1",
                 lambda s: s + 1),
                ("the sign: w = guidance_scale - 1, not 1 - guidance_scale", lambda s: 1 - s)]
    _check("guidance_scale_to_w", fn, cases, lambda s: s - 1, ("w",), mistakes,
           reimplements=("minicfg.guidance:w_from_guidance_scale",))


def _ddim_step(z, eps, lam, lam_next):
    """The reference: ``z' = alpha_lam' x~ + sigma_lam' eps`` with ``x~ = (z - sigma_lam eps) / alpha_lam``."""
    alpha_next, sigma_next = _sig(lam_next, z)
    return alpha_next * diffusion.x_from_eps(z, lam, eps) + sigma_next * eps


def check_ddim_step(fn) -> None:
    """``fn(z, eps, lam, lam_next) -> z_next``: one step of the deterministic DDIM sampler in log-SNR time."""
    specs = [("a batch of one", (1, 1, 4, 4), torch.float32, (-2.0,), (-1.5,)),
             ("non-square images (3 x 5 x 7)", (3, 3, 5, 7), torch.float32, (-4.0, 0.0, 2.0), (-3.0, 1.0, 6.0)),
             ("extreme lam: -20 -> -18 and 15 -> 20", (2, 1, 3, 3), torch.float32, (-20.0, 15.0), (-18.0, 20.0)),
             ("float64, 2-D points", (4, 2), torch.float64, (-6.0, -1.0, 0.0, 3.0), (-5.0, 0.0, 2.0, 3.5))]
    cases = [Case(name, (_tensor(shape, 10, dtype), _tensor(shape, 11, dtype), _lams(*lo, dtype=dtype),
                         _lams(*hi, dtype=dtype))) for name, shape, dtype, lo, hi in specs]

    def old_sigma(z, eps, lam, lam_next):
        return _sig(lam_next, z)[0] * diffusion.x_from_eps(z, lam, eps) + _sig(lam, z)[1] * eps

    def squares(z, eps, lam, lam_next):
        (a, s), (a_n, s_n) = _sig(lam, z), _sig(lam_next, z)
        return a_n**2 * (z - s**2 * eps) / a**2 + s_n**2 * eps

    def no_eps(z, eps, lam, lam_next):
        return _sig(lam_next, z)[0] * diffusion.x_from_eps(z, lam, eps)

    mistakes = [("sigma_lam used where sigma_lam_next was meant: the step keeps the predicted noise at the NEW noise "
                 "level, z' = alpha_lam' x~ + sigma_lam' eps", old_sigma),
                ("lam and lam_next exchanged: x~ comes from z at lam, the new z is built at lam_next",
                 lambda z, eps, lam, lam_next: _ddim_step(z, eps, lam_next, lam)),
                ("alpha^2 and sigma^2 used where alpha and sigma were meant", squares),
                ("the noise is missing: DDIM keeps it, z' = alpha_lam' x~ + sigma_lam' eps, not alpha_lam' x~",
                 no_eps)]
    _check("ddim_step", fn, cases, _ddim_step, ("z_next",), mistakes, reimplements=("minicfg.samplers:ddim",))


def _stand_in_cond(z, lam):
    """A fixed stand-in for the conditional prediction ``eps(z, lam, c)``; ``lam`` a number, 0-d or (B,)."""
    return 0.8 * z + 0.2 * torch.tanh(expand_lam(lam, z) / 4) + 0.1


def _stand_in_uncond(z, lam):
    """A fixed stand-in for the unconditional prediction ``eps(z, lam)``."""
    return 0.9 * z - 0.1 * torch.tanh(expand_lam(lam, z) / 4)


def w_constant(lam):
    """w = 2 at every lam."""
    return torch.full_like(lam, 2.0)


def w_in_an_interval(lam):
    """w = 3 for lam in [-2, 3], 0 (the conditional model) elsewhere."""
    return torch.where((lam >= -2) & (lam <= 3), 3.0, 0.0).to(lam.dtype)


def w_growing_with_lam(lam):
    """w = 1 + tanh(lam / 5): from about 0 at noise to about 2 at the data end."""
    return 1 + torch.tanh(lam / 5)


def _guided_ddim_loop(eps_cond, eps_uncond, z, lams, w_of_lam, *, extra_step=False, w_next=False, combine=None,
                      result="x"):
    """The sampling loop written out, with switches for the mistakes (the reference is ``samplers.ddim``)."""
    n = len(lams) - (0 if extra_step else 1)
    for i in range(n):
        lam = lams[i].expand(z.shape[0])
        w = expand_lam(w_of_lam(lams[min(i + 1, len(lams) - 1)].expand(z.shape[0]) if w_next else lam), z)
        e_c, e_u = eps_cond(z, lam), eps_uncond(z, lam)
        eps = combine(e_c, e_u, w) if combine else (1 + w) * e_c - w * e_u
        x = diffusion.x_from_eps(z, lam, eps)
        if i < len(lams) - 1:
            z = _ddim_step(z, eps, lam, lams[i + 1].expand(z.shape[0]))
    return x if result == "x" else z


def _guided_ddim(eps_cond, eps_uncond, z, lams, w_of_lam):
    """The reference: the library's DDIM sampler on Eq. 6 with ``w = w_of_lam(lam)`` at each evaluation."""
    return samplers.ddim(lambda z, lam: guidance.cfg(eps_cond(z, lam), eps_uncond(z, lam), w_of_lam(lam)), z, lams)


def check_guided_ddim(fn) -> None:
    """``fn(eps_cond, eps_uncond, z, lams, w_of_lam) -> x~``: DDIM sampling with CFG whose ``w`` depends on ``lam``.

    The stand-in predictions are fixed smooth functions of ``(z, lam)``; the expected result is ``samplers.ddim`` on
    Eq. 6 with ``w = w_of_lam(lam)``: evaluations at ``lams[0], ..., lams[-2]``, the last ``x~`` returned.
    """
    specs = [("a batch of one, 2-D point, 8 steps, w = 2", (1, 2), torch.float32, 8, w_constant),
             ("non-square images (3 x 5 x 7), 6 steps, w = 3 inside lam in [-2, 3]", (3, 3, 5, 7), torch.float32, 6,
              w_in_an_interval),
             ("the full grid from lam = -20 in 3 steps, w growing with lam", (2, 1, 3, 3), torch.float32, 3,
              w_growing_with_lam),
             ("float64 2-D points, 10 steps, w = 3 inside lam in [-2, 3]", (5, 2), torch.float64, 10,
              w_in_an_interval)]
    cases = [Case(name, (_stand_in_cond, _stand_in_uncond, _tensor(shape, 12, dtype),
                         schedules.sampling_lams(n, dtype=dtype), w_fn)) for name, shape, dtype, n, w_fn in specs]
    mistakes = [("the model runs at lams[0], ..., lams[-2] (len(lams) - 1 evaluations) and the sampler returns the "
                 "x~ of the last one; yours also steps to lams[-1] and evaluates there",
                 lambda *a: _guided_ddim_loop(*a, extra_step=True)),
                ("the sampler returns the last prediction x~, not z",
                 lambda *a: _guided_ddim_loop(*a, result="z")),
                ("w(lam) evaluated at the next lam: each evaluation uses w at the lam the model sees",
                 lambda *a: _guided_ddim_loop(*a, w_next=True)),
                ("w used where 1 + w was meant: eps~ = (1 + w) eps_cond - w eps_uncond",
                 lambda *a: _guided_ddim_loop(*a, combine=lambda c, u, w: w * c - (w - 1) * u)),
                ("eps_cond and eps_uncond exchanged", lambda *a: _guided_ddim_loop(
                    *a, combine=lambda c, u, w: (1 + w) * u - w * c))]
    _check("guided_ddim", fn, cases, _guided_ddim, ("x",), mistakes,
           reimplements=("minicfg.samplers:ddim", "minicfg.guidance:cfg_eps_fn"))


# -- notebook 07 --------------------------------------------------------------------------------------------------
def _gaussian_stats(n: int, d: int, seed: int, dtype=torch.float64, shift: float = 0.0, rank: int | None = None):
    """Mean and covariance of ``n`` correlated random features in ``d`` dimensions (of rank ``rank`` if given)."""
    mix = _tensor((rank or d, d), seed + 1, torch.float64)
    f = _tensor((n, rank or d), seed, torch.float64) @ mix + shift
    return f.mean(0).to(dtype), torch.cov(f.T).reshape(d, d).to(dtype)


def _fid(mu1, cov1, mu2, cov2):
    from . import metrics

    value = metrics.frechet_distance(*(t.double().numpy() for t in (mu1, cov1, mu2, cov2)))
    return torch.tensor(value, dtype=mu1.dtype)


def _trace_sqrt_product(cov1, cov2):
    """tr((C1 C2)^(1/2)): the C1 C2 has the eigenvalues of the symmetric C1^(1/2) C2 C1^(1/2), all >= 0."""
    return torch.linalg.eigvals(cov1 @ cov2).real.clamp(min=0).sqrt().sum()


def check_fid_from_stats(fn) -> None:
    """``fn(mu1, cov1, mu2, cov2) -> d``: the Frechet distance between two Gaussians, a 0-dim tensor.

    ``|mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2)``, compared with ``metrics.frechet_distance``.
    """
    one_a, one_b = (torch.tensor([0.5], dtype=torch.float64), torch.tensor([[4.0]], dtype=torch.float64)), \
        (torch.tensor([-1.0], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64))
    diag_a = (_tensor((3,), 20, torch.float64), torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)))
    diag_b = (_tensor((3,), 21, torch.float64), torch.diag(torch.tensor([3.0, 0.25, 0.5], dtype=torch.float64)))
    full_a, full_b = _gaussian_stats(40, 5, 22), _gaussian_stats(30, 5, 24, shift=0.3)
    cases = [Case("one feature (d = 1): N(0.5, 4) and N(-1, 1)", one_a + one_b),
             Case("the same Gaussian twice (distance 0)", full_a + full_a),
             Case("diagonal covariances, d = 3", diag_a + diag_b),
             Case("full covariances, d = 5", full_a + full_b),
             Case("a singular covariance (rank 2 in d = 4)", _gaussian_stats(3, 4, 26, rank=2)
                  + _gaussian_stats(20, 4, 28)),
             Case("float32, d = 6", _gaussian_stats(50, 6, 30, torch.float32) + _gaussian_stats(40, 6, 32,
                                                                                               torch.float32))]

    def mistake(mean=lambda d: d.pow(2).sum(), cross=_trace_sqrt_product, factor=2.0):
        return lambda mu1, cov1, mu2, cov2: mean(mu1 - mu2) + cov1.trace() + cov2.trace() - factor * cross(cov1, cov2)

    entrywise = ("(C1 C2)^1/2 is a matrix square root (take the square roots of the eigenvalues), not torch.sqrt of "
                 "the entries")
    mistakes = [("the mean term is the SQUARED distance |mu1 - mu2|^2, not the distance",
                 mistake(mean=lambda d: d.pow(2).sum().sqrt())),
                ("the cross term has a factor 2: - 2 tr((C1^1/2 C2 C1^1/2)^1/2)", mistake(factor=1.0)),
                (entrywise, mistake(cross=lambda c1, c2: torch.diagonal(c1 @ c2).clamp(min=0).sqrt().sum())),
                (entrywise, mistake(cross=lambda c1, c2: (c1.diagonal() * c2.diagonal()).clamp(min=0).sqrt().sum())),
                ("tr(M^1/2) is the sum of the square roots of M's eigenvalues, not the square root of tr(M)",
                 mistake(cross=lambda c1, c2: torch.trace(c1 @ c2).sqrt()))]
    # eigenvalues near 0 (a singular covariance) have round-off of ~1e-16, and their square roots ~1e-8
    _check("fid_from_stats", fn, cases, _fid, ("d",), mistakes,
           tolerance={torch.float32: (1e-3, 1e-4), torch.float64: (1e-7, 1e-9)},
           reimplements=("minicfg.metrics:frechet_distance",))


def _precision_recall(real, fake, k):
    from . import metrics

    return tuple(torch.tensor(v, dtype=real.dtype) for v in metrics.precision_recall(real, fake, k))


def _knn_coverage(query, points, radius_points, k):
    """The share of ``query`` inside a ball around some of ``points``, with radii from ``radius_points``."""
    radii = torch.cdist(radius_points, radius_points).kthvalue(k + 1, dim=1).values
    return (torch.cdist(query, points) <= radii).any(1).to(query.dtype).mean()


def check_precision_recall_knn(fn) -> None:
    """``fn(real, fake, k) -> (precision, recall)``: improved precision and recall with k-NN balls, 0-dim tensors.

    Compared with ``metrics.precision_recall``; a real point's ball has the radius of its k-th nearest OTHER real
    point (likewise for the fakes); precision is the share of fakes in some real ball, recall of reals in a fake one.
    """
    real = _tensor((8, 2), 40, torch.float64)
    collapsed = real[2] + _tensor((6, 2), 41, torch.float64, scale=0.05)
    cases = [Case("2-D points, 8 real and 8 fake, k = 3", (real, _tensor((8, 2), 42, torch.float64, 0.6) + 0.4, 3)),
             Case("10 real and 6 fake, k = 2", (_tensor((10, 3), 43, torch.float64),
                                               _tensor((6, 3), 44, torch.float64, 1.5), 2)),
             Case("fakes that copy the reals, k = 1 (precision = recall = 1)", (real, real.flip(0), 1)),
             Case("fakes collapsed onto one real point, k = 2 (high precision, low recall)", (real, collapsed, 2)),
             Case("float32, 5-D features, 20 each, k = 3", (_tensor((20, 5), 45), _tensor((20, 5), 46, scale=0.7) + 0.3,
                                                            3))]

    mistakes = [("the k-th nearest neighbour leaves the point itself out: its own distance 0 is the smallest, so the "
                 "radius is the (k + 1)-th smallest distance in its row (kthvalue(k + 1))",
                 lambda r, f, k: (_knn_coverage(f, r, r, k - 1), _knn_coverage(r, f, f, k - 1))),
                ("precision and recall exchanged: precision is the share of FAKES inside the balls around the reals",
                 lambda r, f, k: (_knn_coverage(r, f, f, k), _knn_coverage(f, r, r, k))),
                ("the balls around the reals have the reals' own k-NN radii (and the fakes' the fakes' radii)",
                 lambda r, f, k: (_knn_coverage(f, r, f, k), _knn_coverage(r, f, r, k)))]
    _check("precision_recall_knn", fn, cases, _precision_recall, ("precision", "recall"), mistakes,
           reimplements=("minicfg.metrics:precision_recall",))


# -- notebook 08 --------------------------------------------------------------------------------------------------
def _per_class(predicted, labels, num_classes):
    """The reference: per class, the share of its samples predicted as it (recognised / asked for)."""
    right = torch.bincount(labels[predicted == labels], minlength=num_classes).float()
    return right / torch.bincount(labels, minlength=num_classes).float()


def check_per_class_recognition(fn) -> None:
    """``fn(predicted, labels, num_classes) -> rate``: for each class c, the share of the samples asked for as c
    (``labels == c``) that the evaluator predicts as c; float32 of shape (num_classes,). Every class has samples."""
    g = torch.Generator().manual_seed(70)
    labels_10 = torch.arange(10).repeat_interleave(100)
    noisy = torch.where(torch.rand(1000, generator=g) < 0.3, torch.randint(0, 10, (1000,), generator=g), labels_10)
    uneven = torch.tensor([2, 0, 1, 1, 2, 2, 0, 2, 1, 2])
    cases = [Case("uneven classes, unsorted labels", (torch.tensor([2, 1, 1, 0, 2, 0, 0, 2, 1, 1]), uneven, 3)),
             Case("one sample per class, 3 classes", (torch.tensor([0, 2, 2]), torch.tensor([0, 1, 2]), 3)),
             Case("every sample right, 4 classes", (torch.tensor([3, 1, 0, 2, 1]), torch.tensor([3, 1, 0, 2, 1]), 4)),
             Case("10 classes, 100 samples each, 30% guessed at random", (noisy, labels_10, 10))]

    def by_predicted(predicted, labels, num_classes):
        return _per_class(labels, predicted, num_classes)

    mistakes = [("grouped by the predicted class: the rate of class c is over the samples ASKED FOR as c "
                 "(labels == c), the share of them predicted as c", by_predicted),
                ("divided by all the samples: divide the hits of class c by the number of samples of class c",
                 lambda p, y, k: torch.bincount(y[p == y], minlength=k).float() / len(y)),
                ("counts, not shares: divide by the number of samples of each class",
                 lambda p, y, k: torch.bincount(y[p == y], minlength=k).float()),
                ("the overall accuracy repeated: each class needs its own share",
                 lambda p, y, k: torch.full((k,), float((p == y).float().mean())))]
    _check("per_class_recognition", fn, cases, _per_class, ("rate",), mistakes,
           reimplements=())  # no library function computes it: notebook 08 writes it inline


# -- notebook 09 --------------------------------------------------------------------------------------------------
def _batch_shape(like: torch.Tensor) -> tuple[int, ...]:
    return (-1,) + (1,) * (like.ndim - 1)


def check_interval_cfg(fn) -> None:
    """``fn(eps_cond, eps_uncond, lam, w, lam_low, lam_high) -> eps``: Eq. 6 for ``lam`` in ``[lam_low, lam_high]``
    (the bounds included), the conditional prediction ``eps_cond`` (w = 0) elsewhere; one ``lam`` per sample."""
    pairs = _pair_cases()
    edges = _lams(-3.0, -1.0, 0.5, 2.5, 4.0)
    cases = [Case("a batch of one inside the interval", pairs[0].args + (2.0, -1.0, 2.5)),
             Case("non-square images: below, inside, above", pairs[1].args[:2] + (_lams(-3.0, 0.0, 3.0), 1.5, -1.0,
                                                                                     2.5)),
             Case("lam on the bounds (they belong to the interval)", (_tensor((5, 2), 50), _tensor((5, 2), 51), edges,
                                                                       3.0, -1.0, 2.5)),
             Case("extreme lam: -20 and +20 (outside)", pairs[2].args + (4.0, -1.0, 2.5)),
             Case("float64, EDM2's interval [-0.95, 2.52]", pairs[3].args + (2.0, -0.95, 2.52))]

    def interval(e_c, e_u, lam, w, lo, hi, *, inside=None, outside=None, scale=None):
        ins = ((lam >= lo) & (lam <= hi)) if inside is None else inside(lam, lo, hi)
        w_now = torch.where(ins, float(w), 0.0).to(e_c.dtype)
        guided = guidance.cfg(e_c, e_u, w_now) if scale is None else scale(e_c, e_u, expand_lam(w_now, e_c))
        return guided if outside is None else torch.where(ins.reshape(_batch_shape(e_c)), guided, outside(e_c, e_u))

    mistakes = [("the bounds belong to the interval: lam_low <= lam <= lam_high",
                 lambda *a: interval(*a, inside=lambda lam, lo, hi: (lam > lo) & (lam < hi))),
                ("outside the interval the prediction is the conditional one, eps_cond (w = 0), not eps_uncond",
                 lambda *a: interval(*a, outside=lambda e_c, e_u: e_u)),
                ("the interval reversed: guide INSIDE [lam_low, lam_high] and use eps_cond outside",
                 lambda *a: interval(*a, inside=lambda lam, lo, hi: (lam < lo) | (lam > hi))),
                ("w used where 1 + w was meant: eps~ = (1 + w) eps_cond - w eps_uncond",
                 lambda *a: interval(*a, scale=lambda c, u, w: w * c - (w - 1) * u))]
    _check("interval_cfg", fn, cases, lambda *a: interval(*a), ("eps",), mistakes,
           reimplements=("minicfg.guidance_variants:interval_guidance",))


def check_zero_shot_predict(fn) -> None:
    """``fn(errors) -> labels``: the zero-shot classifier's choice from errors of shape (N, num_classes, K), the class
    of the lowest mean error over the K shared draws (``minicfg.zero_shot.classify``); labels (N,) int64."""
    # image 0: class 1 wins two draws by a little, class 0 wins one by a lot; the mean picks class 0, a vote class 1
    votes_differ = torch.tensor([[[0.30, 0.30, 0.01], [0.29, 0.29, 0.50], [0.90, 0.80, 0.70]],
                                 [[0.50, 0.40, 0.45], [0.10, 0.20, 0.15], [0.60, 0.35, 0.30]]], dtype=torch.float64)
    cases = [Case("one image, 10 classes, 4 draws", (_tensor((1, 10, 4), 60).abs(),)),
             Case("a mean that disagrees with the draws' majority vote", (votes_differ,)),
             Case("float32, 6 images, 10 classes, 16 draws", (_tensor((6, 10, 16), 61).exp(),)),
             Case("float64, 5 images, 3 classes, one draw", (_tensor((5, 3, 1), 62, torch.float64).abs(),))]
    mistakes = [("the most likely class has the LOWEST error (the error bounds -log p(x | c)): argmin, not argmax",
                 lambda e: e.mean(2).argmax(1)),
                ("a majority vote of the single draws is not the classifier: average the errors over the K draws, "
                 "then take the class of the lowest mean", lambda e: e.argmin(1).mode(1).values),
                ("averaged over the wrong axis: errors is (N, num_classes, K); mean over K (dim 2), argmin over the "
                 "classes (dim 1)", lambda e: e.mean(1).argmin(1))]
    _check("zero_shot_predict", fn, cases, lambda e: e.mean(2).argmin(1), ("labels",), mistakes,
           reimplements=("minicfg.zero_shot:classify", "minicfg.zero_shot:class_errors"))


#: exercise name -> its check, in the order the notebooks teach them.
EXERCISES: dict[str, Callable] = {
    "alpha_sigma": check_alpha_sigma,
    "q_sample": check_q_sample,
    "log_snr_cosine": check_log_snr_cosine,
    "posterior": check_posterior,
    "ancestral_step": check_ancestral_step,
    "implicit_classifier_grad": check_implicit_classifier_grad,
    "cfg_combination": check_cfg_combination,
    "classifier_guided_eps": check_classifier_guided_eps,
    "label_dropout_loss": check_label_dropout_loss,
    "guidance_scale_to_w": check_guidance_scale_to_w,
    "ddim_step": check_ddim_step,
    "guided_ddim": check_guided_ddim,
    "fid_from_stats": check_fid_from_stats,
    "precision_recall_knn": check_precision_recall_knn,
    "per_class_recognition": check_per_class_recognition,
    "interval_cfg": check_interval_cfg,
    "zero_shot_predict": check_zero_shot_predict,
}
