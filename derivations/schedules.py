"""Noise schedules as log-SNRs (paper Sec. 2): the truncated cosine schedule and DDPM's linear betas.

``lam(u) = -2 log tan(a u + b)`` with ``b = arctan(e^(-lam_max/2))`` and ``a = arctan(e^(-lam_min/2)) - b``
maps ``u`` in [0, 1] onto [lam_min, lam_max]; with ``u ~ U[0, 1]`` it is the paper's training
distribution of log-SNRs. DDPM's discrete ``alpha_bar_t`` are the same process seen at T log-SNRs.
"""

from functools import lru_cache

import sympy as sp

from .forward import derive_alpha_sigma
from .symbols import lam, lam_max, lam_min, sigmoid, u

_A = sp.Symbol("a", positive=True)
_THETA = sp.Symbol(r"\theta", real=True)


def _cosine_ab():
    b = sp.atan(sp.exp(-lam_max / 2))
    return sp.atan(sp.exp(-lam_min / 2)) - b, b


@lru_cache
def derive_cosine_schedule():
    """Endpoints and monotonicity of ``lam(u) = -2 log tan(a u + b)``, and the cosine alpha it generalises.

    1. ``lam(0) = lam_max`` and ``lam(1) = lam_min`` (``tan(arctan y) = y``).
    2. ``dlam/du = -2 a (1 + t^2) / t`` with ``t = tan(a u + b) > 0``: negative because ``a > 0``, and
       ``a = arctan(Y) - arctan(X) = integral_X^Y ds / (1 + s^2) > 0`` for ``X = e^(-lam_max/2) <
       Y = e^(-lam_min/2)``.
    3. With ``lam_min -> -inf`` and ``lam_max -> +inf``: ``a -> pi/2``, ``b -> 0``, and
       ``alpha^2 = sigmoid(lam(u)) = cos^2(pi u / 2)``, the cosine schedule of Nichol & Dhariwal without
       its offset.

    Returns a dict with ``lam`` (in ``u``, ``lam_min``, ``lam_max``), ``a``, ``b``, ``dlam_du`` (in the
    positive ``t``, ``a``), ``lam_untruncated`` and ``alpha2_untruncated`` (= cos^2(pi u / 2)).
    """
    a, b = _cosine_ab()
    lam_u = -2 * sp.log(sp.tan(a * u + b))
    assert sp.simplify(lam_u.subs(u, 0) - lam_max) == 0
    assert sp.simplify(lam_u.subs(u, 1) - lam_min) == 0

    t = sp.Symbol("t", positive=True)  # tan(a u + b), positive since 0 < b <= a u + b < pi/2
    dlam = sp.diff(-2 * sp.log(sp.tan(_A * u + _THETA)), u)
    dlam_t = sp.simplify(dlam.subs(sp.tan(_A * u + _THETA), t))
    assert sp.simplify(dlam_t - (-2 * _A * (1 + t**2) / t)) == 0
    assert dlam_t.is_negative
    X, Y, s = sp.symbols("X Y s", positive=True)
    assert sp.simplify(sp.integrate(1 / (1 + s**2), (s, X, Y)) - (sp.atan(Y) - sp.atan(X))) == 0

    a_inf = sp.limit(sp.atan(sp.exp(-lam_min / 2)), lam_min, -sp.oo) - sp.limit(b, lam_max, sp.oo)
    b_inf = sp.limit(b, lam_max, sp.oo)
    assert (a_inf, b_inf) == (sp.pi / 2, 0)
    lam_inf = -2 * sp.log(sp.tan(a_inf * u + b_inf))
    alpha2_inf = derive_alpha_sigma()["alpha2"].subs(lam, lam_inf)
    assert sp.simplify(alpha2_inf - sp.cos(sp.pi * u / 2) ** 2) == 0
    return {
        "lam": lam_u,
        "a": a,
        "b": b,
        "dlam_du": dlam_t,
        "lam_untruncated": lam_inf,
        "alpha2_untruncated": sp.cos(sp.pi * u / 2) ** 2,
    }


@lru_cache
def derive_cosine_density():
    """Density of ``lam = lam(u)`` for ``u ~ U[0, 1]``: ``p(lam) = sech(lam / 2) / (4 a)`` on [lam_min, lam_max].

    Invert the schedule, ``u(lam) = (arctan(e^(-lam/2)) - b) / a``, and take ``|du/dlam|``; it is a
    truncated hyperbolic secant distribution (untruncated: ``sech(lam/2) / (2 pi)``). It integrates to
    ``u(lam_min) - u(lam_max) = 1``. Returns a dict with ``density`` (in ``lam``, ``lam_min``,
    ``lam_max``) and ``u_of_lam``.
    """
    a, b = _cosine_ab()
    u_of_lam = (sp.atan(sp.exp(-lam / 2)) - b) / a
    lam_u = derive_cosine_schedule()["lam"]
    assert sp.simplify(lam_u.subs(u, u_of_lam) - lam) == 0  # u(lam) inverts lam(u)
    density = sp.simplify(-sp.diff(u_of_lam, lam))
    assert sp.simplify((density - 1 / (4 * a * sp.cosh(lam / 2))).rewrite(sp.exp)) == 0
    assert sp.simplify(u_of_lam.subs(lam, lam_min) - u_of_lam.subs(lam, lam_max) - 1) == 0
    untruncated = sp.limit(sp.limit(density, lam_min, -sp.oo), lam_max, sp.oo)
    assert sp.simplify((untruncated - 1 / (2 * sp.pi * sp.cosh(lam / 2))).rewrite(sp.exp)) == 0
    return {
        "density": 1 / (4 * a * sp.cosh(lam / 2)),
        "u_of_lam": u_of_lam,
        "untruncated": 1 / (2 * sp.pi * sp.cosh(lam / 2)),
    }


@lru_cache
def derive_ddpm_log_snr(n_steps: int = 3):
    """DDPM's ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` is the VP process's ``alpha^2`` at log-SNR ``lam_t``.

    With ``lam_t = log(alpha_bar_t / (1 - alpha_bar_t))`` (the definition of log-SNR, since DDPM's
    ``sigma^2 = 1 - alpha_bar``), ``sigmoid(lam_t) = alpha_bar_t``: checked for symbolic betas
    ``beta_1..beta_n``. Returns a dict with ``betas``, ``alpha_bar`` and ``lam`` (lists over t).
    """
    betas = sp.symbols(f"beta_1:{n_steps + 1}", positive=True)
    alpha_bar, lams = [], []
    for t in range(1, n_steps + 1):
        ab = sp.prod([1 - beta for beta in betas[:t]])
        lam_t = sp.log(ab / (1 - ab))
        assert sp.simplify(sigmoid(lam_t) - ab) == 0
        alpha_bar.append(ab)
        lams.append(lam_t)
    return {"betas": betas, "alpha_bar": alpha_bar, "lam": lams}


def _rational(value):
    return value if isinstance(value, sp.Basic) else sp.Rational(str(value))


def ddpm_log_snr_values(timesteps, n_timesteps: int = 1000, beta_start="1e-4", beta_end="0.02", digits: int = 30):
    """Exact log-SNRs of DDPM's linear schedule at the 1-based ``timesteps``, as sympy Floats.

    ``beta_s = beta_start + (s - 1) (beta_end - beta_start) / (T - 1)`` in exact rationals (no numpy),
    ``alpha_bar_t`` their running product, ``lam_t = log(alpha_bar_t / (1 - alpha_bar_t))`` evaluated to
    ``digits`` significant digits. For tying with ``minicfg.schedules.ddpm_log_snr``.
    """
    timesteps = [int(t) for t in timesteps]
    if not all(1 <= t <= n_timesteps for t in timesteps):
        raise ValueError(f"timesteps must lie in [1, {n_timesteps}], got {timesteps}")
    b0, b1 = _rational(beta_start), _rational(beta_end)
    step = (b1 - b0) / (n_timesteps - 1) if n_timesteps > 1 else sp.Integer(0)
    ab, found = sp.Integer(1), {}
    for s in range(1, max(timesteps) + 1):
        ab *= 1 - (b0 + (s - 1) * step)
        if s in timesteps:
            found[s] = sp.log(ab / (1 - ab)).evalf(digits)
    return [found[t] for t in timesteps]
