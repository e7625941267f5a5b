"""Post-hoc EMA (Karras et al. 2024, EDM2, Sec. 3): the two integrals behind ``minicfg.posthoc_ema``.

A power-function EMA with exponent ``gamma`` stopped at step ``t`` is an average of the training weights
``theta(tau)`` for ``tau`` in ``[0, t]`` with density ``p(tau) = (gamma + 1) tau^gamma / t^(gamma + 1)``.

1. Its width relative to the run, EDM2's ``sigma_rel``, is the standard deviation of that density divided
   by ``t``: ``sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))``, whatever ``t`` is.
2. A mix ``sum_i x_i snapshot_i`` of stored snapshots (profiles ``gamma_i``, stopped at ``t_i``) averages with
   density ``sum_i x_i p_i``. The mix closest in L2 to a wanted profile ``p_r`` solves ``A x = b`` with
   ``A_ij = integral p_i p_j`` and ``b_i = integral p_i p_r``; every such integral is
   ``(g_i + 1)(g_j + 1) m^(g_i + g_j + 1) / ((g_i + g_j + 1) t_i^(g_i + 1) t_j^(g_j + 1))`` with
   ``m = min(t_i, t_j)``, since the product is zero past the earlier stop.
"""

from functools import lru_cache

import sympy as sp

_G = sp.Symbol("gamma", positive=True)
_G2 = sp.Symbol("gamma_2", positive=True)
_TAU = sp.Symbol("tau", positive=True)
_T = sp.Symbol("t", positive=True)
_T2 = sp.Symbol("t_2", positive=True)


def power_density(gamma, t):
    """The weight the power EMA of exponent ``gamma`` stopped at ``t`` gives the weights of time ``tau``."""
    return (gamma + 1) * _TAU**gamma / t ** (gamma + 1)


@lru_cache
def derive_sigma_rel():
    """``sigma_rel(gamma)``: the density's standard deviation over ``t`` (step 1 above).

    Returns a dict with ``total`` (the density's integral, 1), ``mean`` (over ``t``) and ``sigma_rel``.
    """
    p = power_density(_G, _T)
    total = sp.simplify(sp.integrate(p, (_TAU, 0, _T)))
    mean = sp.simplify(sp.integrate(_TAU * p, (_TAU, 0, _T)) / _T)
    second = sp.simplify(sp.integrate(_TAU**2 * p, (_TAU, 0, _T)) / _T**2)
    sigma_rel = sp.sqrt(sp.factor(sp.simplify(second - mean**2)))
    assert total == 1
    assert sp.simplify(mean - (_G + 1) / (_G + 2)) == 0
    assert sp.simplify(sigma_rel**2 - (_G + 1) / ((_G + 2) ** 2 * (_G + 3))) == 0
    return {"total": total, "mean": mean, "sigma_rel": sigma_rel, "gamma": _G}


@lru_cache
def derive_overlap():
    """``integral p_1 p_2 dtau`` for two power EMAs with ``t_1 <= t_2`` (step 2 above).

    Returns a dict with ``overlap`` (in ``gamma``, ``gamma_2``, ``t``, ``t_2``, the integral over ``[0, t]``) and
    the symbols.
    """
    product = power_density(_G, _T) * power_density(_G2, _T2)
    overlap = sp.simplify(sp.integrate(product, (_TAU, 0, _T)))  # p_1 is zero past t = min(t, t_2)
    closed = (_G + 1) * (_G2 + 1) * _T ** (_G + _G2 + 1) / ((_G + _G2 + 1) * _T ** (_G + 1) * _T2 ** (_G2 + 1))
    assert sp.simplify(overlap - closed) == 0
    # the profile with itself: A_ii = (g + 1)^2 / ((2 g + 1) t)
    self_overlap = sp.simplify(overlap.subs({_G2: _G, _T2: _T}))
    assert sp.simplify(self_overlap - (_G + 1) ** 2 / ((2 * _G + 1) * _T)) == 0
    return {"overlap": overlap, "gamma": _G, "gamma_2": _G2, "t": _T, "t_2": _T2}
