"""The algebra behind the guidance variants of ``minicfg.guidance_variants`` (notebook 09).

- Guidance intervals are published as EDM noise levels ``sigma_VE``; the log-SNR of one follows from the
  forward process: ``z / alpha = x + (sigma / alpha) eps``, so ``sigma_VE = sigma / alpha = e^(-lam / 2)``.
- Rescaled CFG (Lin et al. 2023) changes the x-prediction; the eps that goes with it follows from
  ``z = alpha x + sigma eps`` at fixed ``z``.
- Autoguidance (Karras et al. 2024) is the score of ``p(z | c) (p(z | c) / p_weak(z | c))^w``; with the
  unconditional model as the weak one it is CFG (paper Eq. 6).
"""

from functools import lru_cache

import sympy as sp

from .forward import alpha_sigma_of
from .guidance import _eps_of_score, derive_cfg, log_p, log_p_c
from .score import derive_conditional_score
from .symbols import alpha, eps, eps_c, eps_u, lam, sigma, w, x, z

sigma_ve = sp.Symbol(r"\sigma_{\mathrm{VE}}", positive=True)  #: EDM's (variance-exploding) noise level
phi = sp.Symbol(r"\phi", nonnegative=True)  #: rescaled CFG's mixing factor
ratio = sp.Symbol("r", positive=True)  #: std(x_cond) / std(x_cfg)
x_cfg = sp.Symbol(r"x_{\mathrm{cfg}}", real=True)  #: the CFG x-prediction (one coordinate)
eps_cfg = sp.Symbol(r"\epsilon_{\mathrm{cfg}}", real=True)  #: the CFG eps
eps_weak = sp.Symbol(r"\epsilon_{\mathrm{weak}}", real=True)  #: the weak model's conditional eps
log_p_weak = sp.Function(r"\log p_{\mathrm{weak}}")  #: log p_weak(z_lam | c)


@lru_cache
def derive_ve_sigma():
    """``sigma_VE = sigma / alpha = e^(-lam / 2)``, hence ``lam = -2 log sigma_VE``.

    Dividing ``z = alpha x + sigma eps`` by alpha gives the variance-exploding form ``x + sigma_VE eps``.
    Returns a dict with ``sigma_ve`` (a function of lam) and ``lam`` (a function of the symbol ``sigma_ve``).
    """
    al, si = alpha_sigma_of(lam)
    scaled = sp.expand((al * x + si * eps) / al)
    ve = scaled.coeff(eps)
    assert sp.simplify(scaled - (x + ve * eps)) == 0
    assert sp.simplify(ve - sp.exp(-lam / 2)) == 0
    (lam_of_sigma,) = sp.solve(sp.Eq(sp.exp(-lam / 2), sigma_ve), lam)
    assert sp.simplify(lam_of_sigma - (-2 * sp.log(sigma_ve))) == 0
    return {"sigma_ve": sp.exp(-lam / 2), "lam": -2 * sp.log(sigma_ve)}


@lru_cache
def derive_rescale_eps():
    """Rescaled CFG in eps: ``eps = eps_cfg - (alpha / sigma) phi (r - 1) x_cfg``.

    The rescaled, mixed x-prediction is ``phi r x_cfg + (1 - phi) x_cfg``. At fixed ``z``, the eps that explains
    ``z`` with data ``x`` is ``(z - alpha x) / sigma``, so two x-predictions' eps differ by ``-(alpha / sigma)``
    times their difference. ``phi = 0`` or ``r = 1`` leaves CFG unchanged. Returns ``x`` (the new x-prediction)
    and ``eps`` (in ``eps_cfg``, ``x_cfg``, ``alpha``, ``sigma``, ``phi``, ``r``).
    """
    x_new = phi * ratio * x_cfg + (1 - phi) * x_cfg
    eps_of_x = (z - alpha * x) / sigma
    z_of_cfg = alpha * x_cfg + sigma * eps_cfg  # the z that x_cfg and eps_cfg both explain
    eps_new = sp.simplify(eps_of_x.subs(x, x_new).subs(z, z_of_cfg))
    expected = eps_cfg - alpha / sigma * phi * (ratio - 1) * x_cfg
    assert sp.simplify(eps_new - expected) == 0
    assert sp.simplify(expected.subs(phi, 0) - eps_cfg) == 0 and sp.simplify(expected.subs(ratio, 1) - eps_cfg) == 0
    return {"x": x_new, "eps": expected}


@lru_cache
def derive_autoguidance():
    """Autoguidance as a sharpened density: ``p(z | c) (p(z | c) / p_weak(z | c))^w`` has noise prediction
    ``(1 + w) eps_c - w eps_weak``; with ``p_weak(z | c) = p(z)`` it is CFG (Eq. 6).

    Returns a dict with ``guided_eps`` (in ``eps_c``, ``eps_weak``, ``w``).
    """
    score = derive_conditional_score()["score"]
    grad = sp.diff(log_p_c(z) + w * (log_p_c(z) - log_p_weak(z)), z)
    guided = sp.expand(_eps_of_score(grad))
    guided = guided.subs({sp.Derivative(log_p_c(z), z): score.subs(eps, eps_c),
                          sp.Derivative(log_p_weak(z), z): score.subs(eps, eps_weak)})
    expected = (1 + w) * eps_c - w * eps_weak
    assert sp.simplify(guided - expected) == 0
    as_cfg = sp.diff(log_p_c(z) + w * (log_p_c(z) - log_p(z)), z)
    as_cfg = sp.expand(_eps_of_score(as_cfg)).subs({sp.Derivative(log_p_c(z), z): score.subs(eps, eps_c),
                                                    sp.Derivative(log_p(z), z): score.subs(eps, eps_u)})
    assert sp.simplify(as_cfg - derive_cfg()["cfg"]) == 0
    assert sp.simplify(expected.subs(eps_weak, eps_u) - derive_cfg()["cfg"]) == 0
    return {"guided_eps": expected}
