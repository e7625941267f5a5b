"""The variational bound in log-SNR time, and why the lowest eps error is the most likely class (``minicfg.zero_shot``).

VDM (Kingma et al. 2021) writes the continuous-time diffusion loss as ``-1/2 E_t[SNR'(t) ||x - x_hat||^2]`` for
``t`` uniform on [0, 1]. In eps units and log-SNR time it is ``1/2 integral ||eps - eps_hat||^2 dlam``: every
log-SNR counts equally. For a Gaussian class ``x ~ N(mu, s^2)`` (one coordinate) with the exact eps, half the
integrated expected error is ``-log N(x; mu, s^2)`` up to a constant that does not depend on ``mu`` or ``s``:
the bound is exact there, so the class of lowest error is the class of highest likelihood.
"""

from functools import lru_cache

import sympy as sp

from .forward import derive_alpha_sigma
from .symbols import alpha, eps, lam, sigma, x, z

_T = sp.Symbol("t", real=True)  # VDM's time in [0, 1]
_EPS_HAT = sp.Symbol(r"\hat{\epsilon}", real=True)  # a model's eps prediction
_MU = sp.Symbol(r"\mu", real=True)  # a class mean
_S = sp.Symbol("s", positive=True)  # a class standard deviation
_S2 = sp.Symbol("s_2", positive=True)  # another class's standard deviation
_U = sp.Symbol("u", positive=True)  # e^lam, the SNR, for the integrals over lam


@lru_cache
def derive_elbo_in_lam():
    """VDM's integrand ``-SNR'(t) (x - x_hat)^2`` is ``-lam'(t) (eps - eps_hat)^2``: uniform weight in lam.

    1. ``x_hat = (z - sigma eps_hat) / alpha`` with ``z = alpha x + sigma eps`` gives ``x - x_hat =
       -(sigma / alpha) (eps - eps_hat)``.
    2. ``SNR = alpha^2 / sigma^2 = e^lam``, so ``SNR'(t) = e^lam lam'(t)`` and ``SNR'(t) (sigma / alpha)^2 =
       lam'(t)``; ``dt`` times ``-lam'(t)`` is ``-dlam``, and ``t`` from 0 to 1 is ``lam`` from ``lam_max`` down to
       ``lam_min``, so the loss is ``1/2 integral_{lam_min}^{lam_max} (eps - eps_hat)^2 dlam``.

    Returns a dict with ``x_error`` (``x - x_hat`` in eps units) and ``integrand_t`` (VDM's integrand, in
    ``lam(t)``, ``eps`` and ``eps_hat``, equal to ``-lam'(t) (eps - eps_hat)^2``).
    """
    x_hat = (alpha * x + sigma * eps - sigma * _EPS_HAT) / alpha
    x_error = sp.simplify(x - x_hat)
    assert sp.simplify(x_error + sigma / alpha * (eps - _EPS_HAT)) == 0

    lam_t = sp.Function(r"\lambda")(_T)
    a_s = derive_alpha_sigma()
    alpha2, sigma2 = a_s["alpha2"].subs(lam, lam_t), a_s["sigma2"].subs(lam, lam_t)
    snr = sp.simplify(alpha2 / sigma2)
    assert sp.simplify(snr - sp.exp(lam_t)) == 0
    integrand = -sp.diff(snr, _T) * (sigma2 / alpha2) * (eps - _EPS_HAT) ** 2
    assert sp.simplify(integrand + sp.diff(lam_t, _T) * (eps - _EPS_HAT) ** 2) == 0
    return {"x_error": x_error, "integrand_t": sp.simplify(integrand)}


@lru_cache
def derive_gaussian_class_error():
    """For ``x ~ N(mu, s^2)``: the exact eps, its expected squared error, and the error integrated over lam.

    1. ``z = alpha x + sigma eps`` is Gaussian with variance ``v = alpha^2 s^2 + sigma^2`` and ``cov(eps, z) =
       sigma``, so ``E[eps | z] = sigma (z - alpha mu) / v`` (the exact eps of the class).
    2. At a fixed data point ``x``, averaging over ``eps`` (``E eps = 0``, ``E eps^2 = 1``):
       ``E (eps - E[eps | z])^2 = (1 - sigma^2 / v)^2 + sigma^2 alpha^2 (x - mu)^2 / v^2``.
    3. With ``u = e^lam`` (``alpha^2 = u / (1 + u)``, ``sigma^2 = 1 / (1 + u)``, ``dlam = du / u``):
       ``integral sigma^2 alpha^2 / v^2 dlam = integral_0^oo du / (u s^2 + 1)^2 = 1 / s^2``, and the first term,
       ``(u s^2 / (u s^2 + 1))^2``, diverges at the data end for every ``s`` alike, while its difference between two
       classes converges: ``integral (term(s) - term(s_2)) du / u = log(s^2 / s_2^2)``.
    4. So ``1/2 integral E(...)^2 dlam = (x - mu)^2 / (2 s^2) + log s + C`` with ``C`` the same for every class:
       ``-log N(x; mu, s^2)`` up to a constant (``C`` absorbs ``log sqrt(2 pi)``).

    Returns a dict with ``eps_star`` (in ``z``, ``alpha``, ``sigma``, ``mu``, ``s``), ``expected_error`` (in
    ``x``, ``alpha``, ``sigma``, ``mu``, ``s``) and ``neg_log_lik`` (``(x - mu)^2 / (2 s^2) + log s``).
    """
    v = alpha**2 * _S**2 + sigma**2
    eps_star = sigma * (z - alpha * _MU) / v
    # step 1: the linear regression of eps on z; z - E z = alpha (x - mu) + sigma eps
    cov_eps_z, var_z = sigma, v
    assert sp.simplify(eps_star - cov_eps_z / var_z * (z - alpha * _MU)) == 0

    # step 2: expand in eps and average with E eps = 0, E eps^2 = 1
    err = sp.expand((eps - eps_star.subs(z, alpha * x + sigma * eps)) ** 2)
    assert sp.degree(err, eps) == 2
    expected = err.coeff(eps, 2) + err.coeff(eps, 0)  # E eps^2 = 1; the eps^1 term has mean 0
    closed = (1 - sigma**2 / v) ** 2 + sigma**2 * alpha**2 * (x - _MU) ** 2 / v**2
    assert sp.simplify(expected - closed) == 0

    # step 3: the integrals over lam, written in u = e^lam
    on_u = {alpha: sp.sqrt(_U / (1 + _U)), sigma: sp.sqrt(1 / (1 + _U))}
    mean_part = sp.simplify((sigma**2 * alpha**2 / v**2).subs(on_u) / _U)
    assert sp.simplify(mean_part - 1 / (_U * _S**2 + 1) ** 2) == 0
    assert sp.simplify(sp.integrate(mean_part, (_U, 0, sp.oo)) - 1 / _S**2) == 0
    var_part = sp.simplify(((1 - sigma**2 / v) ** 2).subs(on_u))
    assert sp.simplify(var_part - (_U * _S**2 / (_U * _S**2 + 1)) ** 2) == 0
    difference = sp.integrate(sp.simplify((var_part - var_part.subs(_S, _S2)) / _U), (_U, 0, sp.oo))
    assert sp.simplify(difference - sp.log(_S**2 / _S2**2)) == 0

    # step 4: half of each integral
    neg_log_lik = (x - _MU) ** 2 / (2 * _S**2) + sp.log(_S)
    assert sp.simplify((x - _MU) ** 2 / _S**2 / 2 + difference / 2 - (neg_log_lik - neg_log_lik.subs(
        {_S: _S2, x: _MU}))) == 0
    return {"eps_star": eps_star, "expected_error": closed, "neg_log_lik": neg_log_lik}
