"""Noise prediction is a scaled score: ``eps ~= -sigma grad_z log p(z_lam)`` (paper Sec. 2).

For one data point, ``grad_z log q(z_lam | x) = -eps / sigma`` exactly. For a data distribution, the
marginal score is the posterior average of these, ``grad log p(z) = -E[eps | z] / sigma`` (Tweedie /
denoising score matching); since the eps-prediction loss ``E || eps_theta(z) - eps ||^2`` is minimised
by ``eps_theta(z) = E[eps | z]``, a perfect model gives ``eps_theta = -sigma grad log p(z)``.
"""

from functools import lru_cache

import sympy as sp

from .forward import alpha_sigma_of
from .symbols import alpha, eps, lam, sigma, x, z


@lru_cache
def derive_conditional_score():
    """Differentiate the log density of ``q(z_lam | x) = N(alpha x, sigma^2)`` (paper Eq. 1) in ``z``.

    At ``z = alpha x + sigma eps`` the score is ``-eps / sigma``. Returns a dict with ``log_q``, ``grad``
    (in z, x), ``score`` (``-eps/sigma`` in the generic sigma) and ``score_lam`` (sigma as a function of lam).
    """
    log_q = -((z - alpha * x) ** 2) / (2 * sigma**2) - sp.log(sp.sqrt(2 * sp.pi) * sigma)
    grad = sp.diff(log_q, z)
    score = sp.simplify(grad.subs(z, alpha * x + sigma * eps))
    assert sp.simplify(score - (-eps / sigma)) == 0
    _, si = alpha_sigma_of(lam)
    return {"log_q": log_q, "grad": grad, "score": score, "score_lam": score.subs(sigma, si)}


@lru_cache
def derive_marginal_score(n_points: int = 3):
    """``grad_z log p(z_lam) = -E[eps | z_lam] / sigma`` for data on ``n_points`` atoms ``x_i`` w.p. ``pi_i``.

    ``p(z) = sum_i pi_i N(z; alpha x_i, sigma^2)``; ``E[eps | z] = sum_i r_i (z - alpha x_i) / sigma``
    with responsibilities ``r_i = pi_i N_i / p(z)``. Differentiating ``log p(z)`` gives the same thing.
    Also shows the squared loss is minimised by the conditional mean. Returns a dict with ``grad_log_p``,
    ``posterior_mean_eps`` and ``loss_minimiser`` (the symbol ``m_1`` standing for ``E[eps | z]``).
    """
    xs = sp.symbols(f"x_1:{n_points + 1}", real=True)
    pis = sp.symbols(f"pi_1:{n_points + 1}", positive=True)
    dens = [sp.exp(-((z - alpha * xi) ** 2) / (2 * sigma**2)) / (sp.sqrt(2 * sp.pi) * sigma) for xi in xs]
    p = sum(pi * d for pi, d in zip(pis, dens, strict=True))
    grad_log_p = sp.diff(sp.log(p), z)
    mean_eps = sum(pi * d / p * (z - alpha * xi) / sigma for pi, d, xi in zip(pis, dens, xs, strict=True))
    assert sp.simplify(grad_log_p - (-mean_eps / sigma)) == 0
    # the eps-prediction loss E[(e - eps)^2 | z] = e^2 - 2 e m1 + m2 is minimised by e = m1 = E[eps | z]
    e, m1, m2 = sp.symbols("e m_1 m_2", real=True)
    (best,) = sp.solve(sp.diff(e**2 - 2 * e * m1 + m2, e), e)
    assert best == m1
    return {"grad_log_p": grad_log_p, "posterior_mean_eps": mean_eps, "loss_minimiser": best}
