"""Classifier guidance (paper Eq. 4), the implicit classifier and classifier-free guidance (Eq. 6).

Log densities are generic sympy functions of ``z`` (one coordinate of ``z_lam`` at a fixed ``lam``;
the gradient is taken coordinate by coordinate). Scores turn into noise predictions through
``eps = -sigma grad log p`` (:mod:`derivations.score`), applied to ``p(z)`` and ``p(z | c)`` alike.
"""

from functools import lru_cache

import sympy as sp

from .score import derive_conditional_score
from .symbols import eps, eps_c, eps_u, grad_log_cls, sigma, w, z

log_p = sp.Function(r"\log p")  #: log p(z_lam), the unconditional marginal
log_p_c = sp.Function(r"\log p_{c}")  #: log p(z_lam | c), the class-conditional marginal
log_cls = sp.Function(r"\log p_{\mathrm{cls}}")  #: log p(c | z_lam), a classifier
log_prior_c = sp.Symbol(r"\log p(c)", real=True)  #: the class prior, constant in z


def _eps_of_score(score_expr):
    """``eps = -sigma * score``, inverting ``score = -eps / sigma`` from derivations.score."""
    (sol,) = sp.solve(sp.Eq(derive_conditional_score()["score"], score_expr), eps)
    return sol


def _scores_to_eps(expr):
    """Replace the scores of p(z | c) and p(z) by ``-eps_c / sigma`` and ``-eps_u / sigma``."""
    score = derive_conditional_score()["score"]
    return expr.subs(
        {sp.Derivative(log_p_c(z), z): score.subs(eps, eps_c), sp.Derivative(log_p(z), z): score.subs(eps, eps_u)}
    )


@lru_cache
def derive_classifier_guidance():
    """Classifier guidance (paper Eq. 4) as the eps of the sharpened density of Eq. 5.

    ``p~(z | c) ∝ p(z | c) p(c | z)^w`` has score ``grad log p(z | c) + w grad log p(c | z)``, so its
    noise prediction is ``eps~ = -sigma (...) = eps(z, c) - w sigma grad_z log p(c | z)``.
    Returns a dict with ``guided_eps`` in the symbols ``eps_c``, ``grad_log_cls``, ``sigma``, ``w``, and
    ``generic`` in ``eps`` (any base model's prediction) instead of ``eps_c``.
    """
    grad = sp.diff(log_p_c(z) + w * log_cls(z), z)
    guided = sp.expand(_eps_of_score(grad))
    guided = _scores_to_eps(guided).subs(sp.Derivative(log_cls(z), z), grad_log_cls)
    expected = eps_c - w * sigma * grad_log_cls
    assert sp.simplify(guided - expected) == 0
    return {"guided_eps": expected, "generic": expected.subs(eps_c, eps)}


@lru_cache
def derive_implicit_classifier():
    """The implicit classifier ``p^i(c | z) ∝ p(z | c) / p(z)`` and its gradient (paper Sec. 3.2).

    Bayes: ``log p^i(c | z) = log p(z | c) - log p(z) + log p(c)``; the prior drops out of the gradient,
    and with ``grad log p = -eps / sigma``: ``grad log p^i(c | z) = -(eps_c - eps_u) / sigma``.
    Returns a dict with ``log_classifier``, ``grad_in_scores`` and ``grad`` (in eps_c, eps_u, sigma).
    """
    log_classifier = log_p_c(z) - log_p(z) + log_prior_c
    grad_in_scores = sp.diff(log_classifier, z)
    grad = _scores_to_eps(grad_in_scores)
    assert sp.simplify(grad - (-(eps_c - eps_u) / sigma)) == 0
    return {"log_classifier": log_classifier, "grad_in_scores": grad_in_scores, "grad": -(eps_c - eps_u) / sigma}


@lru_cache
def derive_cfg():
    """CFG (paper Eq. 6) is classifier guidance (Eq. 4) with the implicit classifier's exact gradient.

    ``eps_c - w sigma grad log p^i(c | z) = eps_c + w (eps_c - eps_u) = (1 + w) eps_c - w eps_u``.
    Returns a dict with ``cfg`` (in eps_c, eps_u, w) and ``classifier_guided`` (before simplifying).
    """
    implicit_grad = derive_implicit_classifier()["grad"]
    guided = derive_classifier_guidance()["guided_eps"].subs(grad_log_cls, implicit_grad)
    cfg = (1 + w) * eps_c - w * eps_u
    assert sp.simplify(guided - cfg) == 0
    return {"cfg": cfg, "classifier_guided": guided}


@lru_cache
def derive_guidance_shift():
    """Strength ``w + 1`` on the unconditional model equals strength ``w`` on the conditional one.

    Bayes: ``log p(z | c) = log p(c | z) + log p(z) - log p(c)``, so in eps units
    ``eps_c = eps_u - sigma grad log p(c | z)``, and then
    ``eps_u - (w + 1) sigma grad log p(c | z) = eps_c - w sigma grad log p(c | z)`` (paper Sec. 3.1).
    Returns a dict with ``eps_c`` (in eps_u, the classifier gradient, sigma) and both guided forms.
    """
    bayes_grad = sp.diff(log_cls(z) + log_p(z) - log_prior_c, z)  # = grad log p(z | c)
    (eps_cond,) = sp.solve(sp.Eq(derive_conditional_score()["score"].subs(eps, eps_c), bayes_grad), eps_c)
    eps_cond = _scores_to_eps(eps_cond).subs(sp.Derivative(log_cls(z), z), grad_log_cls)
    eps_cond = sp.expand(eps_cond)
    assert sp.simplify(eps_cond - (eps_u - sigma * grad_log_cls)) == 0
    guided = derive_classifier_guidance()["generic"]
    on_uncond = guided.subs({eps: eps_u, w: w + 1})
    on_cond = guided.subs(eps, eps_cond)
    assert sp.simplify(on_uncond - on_cond) == 0
    return {"eps_c": eps_cond, "on_uncond": on_uncond, "on_cond": on_cond}
