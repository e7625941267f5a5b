"""Output parameterisations of the denoiser: v-prediction, EDM preconditioning, and loss weights between them.

The network may predict eps (the paper, Alg. 1), ``v = alpha eps - sigma x`` (Salimans & Ho 2022) or
EDM's preconditioned ``F`` (Karras et al. 2022). Each is a linear reparameterisation of the same
denoiser, so each can be turned into an eps for the samplers and guidance, and a squared error in one
space is a lam-dependent multiple of the squared error in eps space. ``minicfg.predictions`` uses the
results; ``tests/test_predictions.py`` ties them together numerically.
"""

from functools import lru_cache

import sympy as sp

from .forward import alpha_sigma_of
from .symbols import alpha, eps, lam, sigma, x, z

vel = sp.Symbol(r"\mathrm{v}", real=True)  #: the v-prediction target alpha eps - sigma x
F = sp.Symbol("F", real=True)  #: EDM's raw network output
d = sp.Symbol(r"\sigma_{\mathrm{data}}", positive=True)  #: the data's standard deviation
gamma = sp.Symbol(r"\gamma", positive=True)  #: the Min-SNR cap


def _vp(expr):
    """Substitute alpha, sigma as functions of lam (alpha^2 = sigmoid(lam)) and simplify."""
    al, si = alpha_sigma_of(lam)
    return sp.simplify(expr.subs({alpha: al, sigma: si}))


@lru_cache
def derive_v_prediction():
    """Solve ``z = alpha x + sigma eps`` and ``v = alpha eps - sigma x`` for x and eps.

    With ``alpha^2 + sigma^2 = 1``: ``x = alpha z - sigma v`` and ``eps = sigma z + alpha v``, both bounded
    for every lam (no division by alpha or sigma). An error ``dv`` in v is an error ``alpha dv`` in eps, so
    ``|v_hat - v|^2 = |eps_hat - eps|^2 / alpha^2 = (1 + e^(-lam)) |eps_hat - eps|^2``.
    """
    x_s, eps_s = sp.symbols("x_s eps_s", real=True)
    sol = sp.solve([sp.Eq(z, alpha * x_s + sigma * eps_s), sp.Eq(vel, alpha * eps_s - sigma * x_s)],
                   [x_s, eps_s], dict=True)[0]
    x_of = sp.simplify(sol[x_s].subs(sigma, sp.sqrt(1 - alpha**2)))
    eps_of = sp.simplify(sol[eps_s].subs(sigma, sp.sqrt(1 - alpha**2)))
    sig = sp.sqrt(1 - alpha**2)
    assert sp.simplify(x_of - (alpha * z - sig * vel)) == 0
    assert sp.simplify(eps_of - (sig * z + alpha * vel)) == 0
    # error in eps per unit error in v, and the squared-error factor as a function of lam
    d_eps_d_v = sp.diff(eps_of, vel)
    factor = _vp(1 / d_eps_d_v**2)
    assert sp.simplify(factor - (1 + sp.exp(-lam))) == 0
    target = alpha * eps - sigma * x
    return {"x": _vp(alpha * z - sigma * vel), "eps": _vp(sigma * z + alpha * vel), "target": _vp(target),
            "mse_factor": factor}


@lru_cache
def derive_edm_preconditioning():
    """EDM's c_in, c_skip and c_out (Karras et al. 2022, App. B.6) derived, then written in log-SNR time.

    In EDM's variables the noisy input is ``y = x + s n`` with ``s = sigma / alpha`` (so ``y = z / alpha``) and
    the denoiser is ``D = c_skip y + c_out F(c_in y)``. Conditions: the net's input has unit variance,
    ``c_in^2 (d^2 + s^2) = 1``; the training target ``(x - c_skip y) / c_out`` has unit variance; and
    ``c_skip`` is chosen to make ``c_out`` (the factor on the net's errors) as small as possible. Result:
    ``c_skip = d^2 / (s^2 + d^2)``, ``c_out = s d / sqrt(s^2 + d^2)``. With ``r = sqrt(sigma^2 + d^2 alpha^2)``:
    the net sees ``z / r``; ``x = d^2 alpha z / r^2 + sigma d F / r``; ``eps = sigma z / r^2 - alpha d F / r``;
    the target is ``F = (sigma x - d^2 alpha eps) / (d r)``; ``|F_hat - F|^2 = r^2 / (alpha d)^2 |eps_hat - eps|^2``;
    and ``d = 1`` is v-prediction with ``F = -v``.
    """
    s, c_skip = sp.symbols("s c_skip", positive=True)
    c_in = 1 / sp.sqrt(d**2 + s**2)
    # variance of the target (x - c_skip y) / c_out for x of variance d^2 and independent unit noise n:
    c_out2 = sp.expand((1 - c_skip) ** 2 * d**2 + c_skip**2 * s**2)  # = c_out^2 for unit target variance
    (c_skip_opt,) = sp.solve(sp.diff(c_out2, c_skip), c_skip)
    assert sp.simplify(c_skip_opt - d**2 / (s**2 + d**2)) == 0
    c_out = sp.sqrt(sp.simplify(c_out2.subs(c_skip, c_skip_opt)))
    assert sp.simplify(c_out**2 - s**2 * d**2 / (s**2 + d**2)) == 0

    # into log-SNR time: s = sigma / alpha, y = z / alpha, sigma = sqrt(1 - alpha^2); r as in the docstring
    sig = sp.sqrt(1 - alpha**2)
    r = sp.sqrt(sig**2 + d**2 * alpha**2)
    to_vp = {s: sig / alpha}
    x_hat = (c_skip_opt * z / alpha + c_out * F).subs(to_vp)
    assert sp.simplify(x_hat - (d**2 * alpha * z / r**2 + sig * d * F / r)) == 0
    assert sp.simplify(c_in.subs(to_vp) / alpha - 1 / r) == 0  # c_in y = z / r
    eps_of = sp.simplify((z - alpha * x_hat) / sig)
    assert sp.simplify(eps_of - (sig * z / r**2 - alpha * d * F / r)) == 0
    (f_target,) = sp.solve(sp.Eq(x_hat, x), F)
    f_target = sp.simplify(f_target.subs(z, alpha * x + sig * eps))
    assert sp.simplify(f_target - (sig * x - d**2 * alpha * eps) / (d * r)) == 0
    factor = sp.simplify(1 / sp.diff(eps_of, F) ** 2)
    assert sp.simplify(factor - r**2 / (alpha * d) ** 2) == 0
    # d = 1 is v-prediction: F = -v
    v_of = derive_v_prediction()
    assert sp.simplify(f_target.subs(d, 1) + (alpha * eps - sig * x)) == 0
    assert sp.simplify(factor.subs(d, 1) - v_of["mse_factor"].subs(lam, sp.log(alpha**2 / (1 - alpha**2)))) == 0

    al, si = alpha_sigma_of(lam)
    at_lam = {alpha: al}
    return {"c_skip": c_skip_opt, "c_out": c_out, "c_in_vp": _simp(1 / r, at_lam), "eps": _simp(eps_of, at_lam),
            "target": _simp(f_target, at_lam), "mse_factor": _simp(factor, at_lam)}


def _simp(expr, subs):
    return sp.simplify(expr.subs(subs))


@lru_cache
def derive_min_snr_weight():
    """Min-SNR-gamma (Hang et al. 2023) is one weighting, whichever space the loss is written in.

    Its x-space weight is ``min(SNR, gamma)`` with ``SNR = e^lam``. An x error is ``sigma / alpha`` times an
    eps error, so in eps units the weight is ``min(SNR, gamma) / SNR = min(1, gamma e^(-lam))``; the
    weights the paper lists for eps-prediction (``min(SNR, gamma) / SNR``) and v-prediction
    (``min(SNR, gamma) / (SNR + 1)``) give the same eps-space factor once multiplied by each space's
    squared-error factor. Checked on both branches of the min.
    """
    snr = sp.exp(lam)
    x_factor = _vp(sigma**2 / alpha**2)  # |x_hat - x|^2 per unit |eps_hat - eps|^2
    v_factor = derive_v_prediction()["mse_factor"]
    results = {}
    for branch, m in (("snr_below_gamma", snr), ("snr_above_gamma", gamma)):
        eps_space = sp.simplify(m * x_factor)
        assert sp.simplify(eps_space - m / snr) == 0  # the eps-prediction weight
        assert sp.simplify(m / (snr + 1) * v_factor - eps_space) == 0  # the v-prediction weight
        results[branch] = eps_space
    return {"eps_space": sp.Min(1, gamma * sp.exp(-lam)), **results}
