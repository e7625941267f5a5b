"""The posterior ``q(z_lam' | z_lam, x)`` (paper Eq. 3) by Gaussian conjugacy, and the reverse variance.

Prior: ``q(z_lam' | x) = N(alpha' x, sigma'^2)`` (Eq. 1). Likelihood: ``q(z_lam | z_lam')`` from Eq. 2.
Their product, as a function of ``z_lam'``, is a Gaussian; reading off the quadratic and linear
coefficients of its log density gives the posterior's precision and mean.
"""

from functools import lru_cache

import sympy as sp

from .forward import alpha_sigma_of, derive_transition
from .symbols import alpha, alpha_next, lam, lam_next, sigma, sigma_next, v, x, z, z_next


@lru_cache
def derive_posterior():
    """Complete the square in ``z_lam'`` for ``q(z_lam' | x) q(z_lam | z_lam')`` (paper Eq. 3).

    With ``q(z_lam | z_lam') = N((alpha/alpha') z_lam', s^2)`` the log density is
    ``c2 z'^2 + c1 z' + const``, so the posterior variance is ``-1 / (2 c2)`` and its mean ``c1 * var``.
    Substituting ``alpha(lam)``, ``sigma(lam)`` and ``s^2 = (1 - e^(lam - lam')) sigma_lam^2`` gives::

        mean = e^(lam - lam') (alpha' / alpha) z_lam + (1 - e^(lam - lam')) alpha' x
        var  = (1 - e^(lam - lam')) sigma'^2

    Returns a dict with ``mean``, ``var`` (functions of ``z``, ``x``, ``lam``, ``lam_next``), the generic
    coefficients ``c2``, ``c1`` and the generic ``mean_generic``, ``var_generic`` (in alpha, sigma, ... and
    the transition variance ``s2``).
    """
    s2 = sp.Symbol(r"\sigma^{2}_{\lambda|\lambda'}", positive=True)
    log_prior = -((z_next - alpha_next * x) ** 2) / (2 * sigma_next**2)
    log_lik = -((z - alpha / alpha_next * z_next) ** 2) / (2 * s2)
    poly = sp.Poly(sp.expand(log_prior + log_lik), z_next)
    assert poly.degree() == 2  # a Gaussian in z_lam'
    c2, c1 = poly.coeff_monomial(z_next**2), poly.coeff_monomial(z_next)
    var_generic = sp.simplify(-1 / (2 * c2))
    mean_generic = sp.simplify(c1 * var_generic)
    # completing the square: c2 z'^2 + c1 z' = -(z' - mean)^2 / (2 var) + (terms free of z')
    remainder = c2 * z_next**2 + c1 * z_next + (z_next - mean_generic) ** 2 / (2 * var_generic)
    assert sp.simplify(sp.diff(remainder, z_next)) == 0

    al, si = alpha_sigma_of(lam)
    al_n, si_n = alpha_sigma_of(lam_next)
    subs = {alpha: al, sigma: si, alpha_next: al_n, sigma_next: si_n, s2: derive_transition()["var"]}
    one_minus = 1 - sp.exp(lam - lam_next)
    mean = sp.exp(lam - lam_next) * (al_n / al) * z + one_minus * al_n * x
    var = one_minus * si_n**2
    assert sp.simplify(var_generic.subs(subs) - var) == 0
    assert sp.simplify(mean_generic.subs(subs) - mean) == 0
    return {
        "mean": mean,
        "var": var,
        "c2": c2,
        "c1": c1,
        "mean_generic": mean_generic,
        "var_generic": var_generic,
        "s2": s2,
    }


@lru_cache
def derive_reverse_variance():
    """The reverse-step variance ``(sigma~^2_{lam'|lam})^(1-v) (sigma^2_{lam|lam'})^v`` (paper Sec. 2).

    A geometric interpolation between the posterior variance of Eq. 3 (``v = 0``) and the forward
    transition variance of Eq. 2 (``v = 1``); it simplifies to
    ``(1 - e^(lam - lam')) (sigma'^2)^(1-v) (sigma^2)^v``. Returns a dict with ``var`` (in ``lam``,
    ``lam_next``, ``v``) and ``factored``, that simplified form.
    """
    post = derive_posterior()["var"]
    trans = derive_transition()["var"]
    var = post ** (1 - v) * trans**v
    assert sp.simplify(var.subs(v, 0) - post) == 0
    assert sp.simplify(var.subs(v, 1) - trans) == 0
    _, si = alpha_sigma_of(lam)
    _, si_n = alpha_sigma_of(lam_next)
    factored = (1 - sp.exp(lam - lam_next)) * (si_n**2) ** (1 - v) * (si**2) ** v
    # both sides positive for lam < lam', so forcing the power rule (a b)^v = a^v b^v is valid
    assert sp.simplify(sp.expand_power_base(var, force=True) / factored) == 1
    return {"var": var, "factored": factored}
