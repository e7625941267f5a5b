"""The forward process (paper Eq. 1 and Eq. 2): log-SNR, alpha and sigma, transitions, x <-> eps.

``q(z_lam | x) = N(alpha_lam x, sigma_lam^2)`` with ``alpha^2 + sigma^2 = 1`` (variance preserving) and
``lam = log(alpha^2 / sigma^2)``. Everything is one-dimensional: the process acts on each coordinate
independently, so the scalar case is the whole story.
"""

from functools import lru_cache

import sympy as sp

from .symbols import alpha, alpha_next, eps, lam, lam_next, sigma, sigma_next, sigmoid, x, z, z_next


@lru_cache
def derive_alpha_sigma():
    """Solve ``lam = log(alpha^2 / sigma^2)``, ``alpha^2 + sigma^2 = 1`` for the squared scales.

    Returns a dict: ``alpha2 = sigmoid(lam)``, ``sigma2 = sigmoid(-lam)``, their square roots ``alpha``
    and ``sigma`` (functions of ``lam``), and ``solution``, the solver's raw answer.
    """
    a2, s2 = sp.symbols("A S", positive=True)  # alpha^2 and sigma^2
    (sol,) = sp.solve([sp.Eq(lam, sp.log(a2 / s2)), sp.Eq(a2 + s2, 1)], [a2, s2], dict=True)
    assert sp.simplify(sol[a2] - sigmoid(lam)) == 0
    assert sp.simplify(sol[s2] - sigmoid(-lam)) == 0
    # and back: the log-SNR of the solution is lam again
    assert sp.simplify(sp.expand_log(sp.log(sol[a2] / sol[s2]), force=True) - lam) == 0
    return {
        "alpha2": sigmoid(lam),
        "sigma2": sigmoid(-lam),
        "alpha": sp.sqrt(sigmoid(lam)),
        "sigma": sp.sqrt(sigmoid(-lam)),
        "solution": (sol[a2], sol[s2]),
    }


def alpha_sigma_of(t):
    """``(alpha, sigma)`` at log-SNR ``t`` (a symbol or expression), from :func:`derive_alpha_sigma`."""
    d = derive_alpha_sigma()
    return d["alpha"].subs(lam, t), d["sigma"].subs(lam, t)


@lru_cache
def derive_transition():
    """The transition ``q(z_lam | z_lam') = N(A z_lam', V)`` for ``lam < lam'`` (paper Eq. 2).

    Unknown ``A`` and ``V`` are fixed by asking that noising ``x`` to ``lam'`` (Eq. 1) and then moving
    to ``lam`` gives back ``q(z_lam | x)``: mean ``A alpha' x = alpha x`` and variance
    ``A^2 sigma'^2 + V = sigma^2``. Result: ``A = alpha / alpha'`` and
    ``V = sigma_{lam|lam'}^2 = (1 - e^(lam - lam')) sigma_lam^2``, which is positive iff ``lam < lam'``.

    Returns a dict with ``mean`` (in ``z_next``, ``lam``, ``lam_next``), ``var`` and the generic
    ``coef`` and ``var_generic`` in the symbols alpha, sigma, alpha', sigma'.
    """
    A, V = sp.symbols("A V", positive=True)
    (sol,) = sp.solve([A * alpha_next - alpha, A**2 * sigma_next**2 + V - sigma**2], [A, V], dict=True)
    al, si = alpha_sigma_of(lam)
    al_n, si_n = alpha_sigma_of(lam_next)
    subs = {alpha: al, sigma: si, alpha_next: al_n, sigma_next: si_n}
    var = sol[V].subs(subs)
    var_closed = (1 - sp.exp(lam - lam_next)) * si**2
    assert sp.simplify(var - var_closed) == 0
    mean = sol[A].subs(subs) * z_next
    return {"mean": mean, "var": var_closed, "coef": sol[A], "var_generic": sol[V]}


@lru_cache
def derive_x_eps():
    """Solve ``z = alpha x + sigma eps`` (paper Eq. 1, reparameterised) for ``x`` and for ``eps``.

    Returns a dict: ``x = (z - sigma eps) / alpha`` and ``eps = (z - alpha x) / sigma`` (functions of
    ``lam``), plus ``x_generic`` and ``eps_generic`` in the plain symbols alpha, sigma.
    """
    reparam = sp.Eq(z, alpha * x + sigma * eps)
    (x_sol,) = sp.solve(reparam, x)
    (eps_sol,) = sp.solve(reparam, eps)
    assert sp.simplify(x_sol - (z - sigma * eps) / alpha) == 0
    assert sp.simplify(eps_sol - (z - alpha * x) / sigma) == 0
    # the two maps are inverse to each other
    assert sp.simplify(eps_sol.subs(x, x_sol) - eps) == 0
    al, si = alpha_sigma_of(lam)
    return {
        "x": x_sol.subs({alpha: al, sigma: si}),
        "eps": eps_sol.subs({alpha: al, sigma: si}),
        "x_generic": x_sol,
        "eps_generic": eps_sol,
    }
