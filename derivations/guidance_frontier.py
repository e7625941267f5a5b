"""The algebra behind the guidance methods of issue 31 (notebook 10): CFG++, CFG-Zero*, APG, a w schedule, and the
Gaussian tilted density that :mod:`minicfg.tilted` measures CFG's samplers against.

- CFG++ (Chung et al. 2024) predicts ``x`` with ``eps_u + l (eps_c - eps_u)`` and renoises with ``eps_u``. In a
  DDIM step from ``lam`` to ``lam'`` this is DDIM with CFG at the scale ``1 + w = l / (1 - e^(-h))``,
  ``h = (lam' - lam) / 2``: a scale that grows as the steps shrink.
- CFG-Zero* (Fan et al. 2025) scales the unconditional prediction by ``s* = <v_c, v_u> / ||v_u||^2``, the ``s``
  that minimises ``||v_c - s v_u||^2`` (least squares); ``s* = 1`` gives CFG back.
- APG (Sadat et al. 2024) splits the guidance update ``D = pred_c - pred_u`` into its projection on the
  conditional prediction and the orthogonal rest and down-weights the first by ``eta``; ``eta = 1`` (no norm
  threshold, no momentum) is CFG.
- The tilted density of two Gaussians, ``N(m1, s1^2)^(1+w) N(m0, s0^2)^(-w)``, is Gaussian with precision
  ``(1+w)/s1^2 - w/s0^2`` and the precision-weighted mean (completing the square).
- CFG-Zero*'s zero-init in log-SNR time: a DDIM step is the Euler step of the rectified-flow ODE in
  ``y = z / (alpha + sigma)``, ``t = sigma / (alpha + sigma)``, with velocity ``eps~ - x~``; a zero velocity is
  ``x~ = eps~ = z / (alpha + sigma)``, and the step then keeps ``y``.
- A schedule ``w(lam) = c g(lam)`` increasing in ``lam`` (towards the data end, after Wang et al. 2024), with ``c``
  chosen so that its mean over the evaluated log-SNRs is a given ``w``.

Vectors are written with three explicit components: every identity used here is linear or quadratic in the
components, so the same algebra holds in any dimension.
"""

from functools import lru_cache

import sympy as sp

from .forward import alpha_sigma_of
from .guidance import derive_cfg
from .symbols import alpha, alpha_next, eps_c, eps_u, lam, lam_max, lam_min, lam_next, sigma, sigma_next, sigmoid, w, z

ell = sp.Symbol("l", real=True)  #: CFG++'s own scale (the paper's lambda, in [0, 1]; lambda is our log-SNR)
h = sp.Symbol("h", positive=True)  #: half the log-SNR step, (lam' - lam) / 2
s = sp.Symbol("s", real=True)  #: CFG-Zero*'s scale of the unconditional prediction
eta = sp.Symbol(r"\eta", real=True)  #: APG's weight of the parallel part
m0, m1 = sp.symbols("m_0 m_1", real=True)  #: means of p(x) = N(m0, s0^2) and p(x | c) = N(m1, s1^2)
s0, s1 = sp.symbols("s_0 s_1", positive=True)
w_bar = sp.Symbol(r"\bar{w}", real=True)  #: the mean guidance strength a schedule must keep
N_COMPONENTS = 3


def _vector(name: str) -> sp.Matrix:
    return sp.Matrix(sp.symbols(f"{name}_1:{N_COMPONENTS + 1}", real=True))


v_c, v_u = _vector("c"), _vector("u")  #: conditional and unconditional predictions (eps, v or x), as vectors


@lru_cache
def derive_cfgpp_ddim():
    """CFG++ in one DDIM step is DDIM CFG at ``1 + w = l / (1 - e^(-h))``, ``h = (lam' - lam) / 2``.

    CFG++: ``x = (z - sigma eps_l) / alpha`` with ``eps_l = eps_u + l (eps_c - eps_u)``, then
    ``z' = alpha' x + sigma' eps_u``. DDIM CFG: the same with ``eps_w = (1 + w) eps_c - w eps_u`` in both places.
    Both are affine in ``z``, ``eps_c``, ``eps_u``; ``w`` is solved from equal coefficients and written in
    log-SNR terms with ``sigma / alpha = e^(-lam / 2)``. Returns ``z_cfgpp``, ``z_ddim`` (in the generic
    alpha, sigma symbols), ``scale`` (``1 + w`` in ``l``, ``h``), ``w`` (in ``l``, ``lam``, ``lam'``).
    """
    eps_l = eps_u + ell * (eps_c - eps_u)
    z_cfgpp = alpha_next * (z - sigma * eps_l) / alpha + sigma_next * eps_u
    eps_w = derive_cfg()["cfg"]
    z_ddim = alpha_next * (z - sigma * eps_w) / alpha + sigma_next * eps_w
    diff = sp.expand(z_cfgpp - z_ddim)
    coeffs = [diff.coeff(t) for t in (z, eps_c, eps_u)]
    assert sp.expand(diff - sum(c * t for c, t in zip(coeffs, (z, eps_c, eps_u), strict=True))) == 0
    (w_generic,) = sp.solve(coeffs[1], w)
    assert all(sp.simplify(c.subs(w, w_generic)) == 0 for c in coeffs)  # one w matches every coefficient
    # in log-SNR terms: sigma' alpha / (alpha' sigma) = e^(-(lam' - lam) / 2) = e^(-h)
    al, si = alpha_sigma_of(lam)
    al_n, si_n = alpha_sigma_of(lam_next)
    ratio = sp.simplify(sp.powsimp((si_n * al / (al_n * si)) ** 2, force=True))
    assert sp.simplify(ratio - sp.exp(-(lam_next - lam))) == 0
    w_lam = w_generic.subs({alpha: al, sigma: si, alpha_next: al_n, sigma_next: si_n})
    scale = ell / (1 - sp.exp(-h))
    w_expected = scale.subs(h, (lam_next - lam) / 2) - 1
    assert sp.simplify(sp.expand(w_generic + 1) - ell / (1 - sigma_next * alpha / (alpha_next * sigma))) == 0
    for lo, hi in ((-3, 1), (0, sp.Rational(1, 2)), (2, 9)):  # and in the sqrt(sigmoid) forms, to 25 digits
        subs = {lam: lo, lam_next: hi, ell: sp.Rational(7, 10)}
        assert abs(sp.N(w_lam.subs(subs) - w_expected.subs(subs), 30)) < 1e-25
    assert sp.limit(scale, h, sp.oo) == ell  # one step to the data end: CFG++ is CFG at scale l
    return {"z_cfgpp": z_cfgpp, "z_ddim": z_ddim, "scale": scale, "w": w_expected}


@lru_cache
def derive_cfg_zero_scale():
    """CFG-Zero*'s ``s* = <v_c, v_u> / ||v_u||^2`` minimises ``||v_c - s v_u||^2``; the guided prediction.

    Setting the derivative in ``s`` to zero gives ``s*``; the second derivative ``2 ||v_u||^2`` is positive; at
    ``s*`` the residual ``v_c - s* v_u`` is orthogonal to ``v_u``. The guided prediction
    ``s* v_u + (1 + w) (v_c - s* v_u)`` is CFG where ``s* = 1``. Returns ``s_star`` (in the components of
    ``v_c``, ``v_u``), ``loss`` and ``guided`` (in ``eps_c``, ``eps_u``, ``s``, ``w``, per coordinate).
    """
    loss = sp.expand(((v_c - s * v_u).T * (v_c - s * v_u))[0])
    (s_star,) = sp.solve(sp.diff(loss, s), s)
    expected = (v_c.T * v_u)[0] / (v_u.T * v_u)[0]
    assert sp.simplify(s_star - expected) == 0
    assert sp.simplify(sp.diff(loss, s, 2) - 2 * (v_u.T * v_u)[0]) == 0  # > 0 unless v_u = 0: a minimum
    assert sp.simplify(((v_c - s_star * v_u).T * v_u)[0]) == 0
    guided = s * eps_u + (1 + w) * (eps_c - s * eps_u)
    assert sp.simplify(guided.subs(s, 1) - derive_cfg()["cfg"]) == 0
    return {"s_star": expected, "loss": loss, "guided": guided}


@lru_cache
def derive_apg_split():
    """APG's split of the update ``D = v_c - v_u`` along the conditional prediction ``v_c``.

    ``D_par = (<D, v_c> / ||v_c||^2) v_c`` and ``D_perp = D - D_par``: they sum to ``D`` and are orthogonal. The
    guided prediction ``v_c + w (D_perp + eta D_par)`` is CFG, ``(1 + w) v_c - w v_u``, at ``eta = 1`` (no norm
    threshold, no momentum). Returns ``parallel``, ``orthogonal`` and ``guided`` (vectors in the components).
    """
    update = v_c - v_u
    parallel = ((update.T * v_c)[0] / (v_c.T * v_c)[0]) * v_c
    orthogonal = update - parallel
    assert sp.simplify(parallel + orthogonal - update) == sp.zeros(N_COMPONENTS, 1)
    assert sp.simplify((parallel.T * orthogonal)[0]) == 0
    assert sp.simplify((orthogonal.T * v_c)[0]) == 0  # the orthogonal part has no component along v_c
    guided = v_c + w * (orthogonal + eta * parallel)
    cfg = derive_cfg()["cfg"]
    as_cfg = sp.Matrix([cfg.subs({eps_c: a, eps_u: b}) for a, b in zip(v_c, v_u, strict=True)])
    assert sp.simplify(guided.subs(eta, 1) - as_cfg) == sp.zeros(N_COMPONENTS, 1)
    return {"parallel": sp.ImmutableMatrix(parallel), "orthogonal": sp.ImmutableMatrix(orthogonal),
            "guided": sp.ImmutableMatrix(guided)}


@lru_cache
def derive_gaussian_tilt():
    """``N(x; m1, s1^2)^(1+w) N(x; m0, s0^2)^(-w)`` is ``N(mean, 1 / prec)`` by completing the square.

    The log-density is quadratic in ``x``; matching it to ``-prec (x - mean)^2 / 2 + const`` fixes
    ``prec = (1+w)/s1^2 - w/s0^2`` and ``mean = ((1+w) m1/s1^2 - w m0/s0^2) / prec``; it is a density only while
    ``prec > 0``. Returns ``precision``, ``mean`` and ``var``.
    """
    x = sp.Symbol("x", real=True)
    P, M, C = sp.symbols("P M C", real=True)
    log_tilt = -(1 + w) * (x - m1) ** 2 / (2 * s1**2) + w * (x - m0) ** 2 / (2 * s0**2)
    square = -P * (x - M) ** 2 / 2 + C
    eqs = sp.Poly(sp.expand(log_tilt - square), x).all_coeffs()  # every power of x must vanish
    (sol,) = sp.solve(eqs, [P, M, C], dict=True)
    precision = (1 + w) / s1**2 - w / s0**2
    mean = ((1 + w) * m1 / s1**2 - w * m0 / s0**2) / precision
    assert sp.simplify(sol[P] - precision) == 0 and sp.simplify(sol[M] - mean) == 0
    assert sp.simplify(mean.subs(w, 0) - m1) == 0 and sp.simplify(precision.subs(w, 0) - 1 / s1**2) == 0
    return {"precision": precision, "mean": mean, "var": 1 / precision}


@lru_cache
def derive_w_schedule(n_points: int = 4):
    """``w(lam) = c g(lam)`` with ``g`` increasing; ``c`` so that the mean of ``w`` over the evaluated log-SNRs
    ``lam_1..lam_n`` is ``w_bar``: ``c = n w_bar / sum_i g(lam_i)``.

    Two shapes of ``g``: ``sigmoid(lam)`` (= alpha^2, rising from 0 at the noise end to 1 at the data end) and
    the linear ramp ``(lam - lam_min) / (lam_max - lam_min)``; both have a positive derivative. For the ramp
    averaged uniformly over ``[lam_min, lam_max]`` (instead of over a grid) ``c = 2 w_bar``. Returns ``c_grid``
    (in ``w_bar`` and the symbols ``g_1..g_n``), ``g_values``, ``sigmoid`` and ``ramp`` (the two ``g``) and
    ``c_uniform_ramp``.
    """
    c = sp.Symbol("c", real=True)
    g_values = sp.symbols(f"g_1:{n_points + 1}", positive=True)
    (c_grid,) = sp.solve(sp.Eq(sum(c * g for g in g_values) / n_points, w_bar), c)
    assert sp.simplify(c_grid - n_points * w_bar / sum(g_values)) == 0
    ramp = (lam - lam_min) / (lam_max - lam_min)
    slope_sigmoid = sp.diff(sigmoid(lam), lam)
    assert sp.simplify(slope_sigmoid - sigmoid(lam) * sigmoid(-lam)) == 0 and slope_sigmoid.is_positive
    assert sp.simplify(sp.diff(ramp, lam) - 1 / (lam_max - lam_min)) == 0  # positive for lam_max > lam_min
    mean_ramp = sp.integrate(c * ramp, (lam, lam_min, lam_max)) / (lam_max - lam_min)
    (c_uniform,) = sp.solve(sp.Eq(sp.simplify(mean_ramp), w_bar), c)
    assert sp.simplify(c_uniform - 2 * w_bar) == 0
    return {"c_grid": c_grid, "g_values": list(g_values), "sigmoid": sigmoid(lam), "ramp": ramp,
            "c_uniform_ramp": c_uniform}


@lru_cache
def derive_zero_velocity():
    """CFG-Zero*'s zeroed steps in log-SNR time: DDIM is Euler on the rectified flow, and its zero velocity.

    With ``t = sigma / (alpha + sigma)`` and ``y = z / (alpha + sigma)``, a state ``z = alpha x + sigma eps`` is
    ``y = (1 - t) x + t eps``, the rectified-flow interpolation, whose velocity ``dy/dt`` is ``eps - x``. The DDIM
    step ``z' = alpha' x~ + sigma' eps~`` (the predictions held over the step) is then exactly the Euler step
    ``y' = y + (t' - t) (eps~ - x~)``. A flow model's output set to zero (Fan et al.'s zero-init) is
    ``eps~ = x~``; with ``z = alpha x~ + sigma eps~`` both equal ``y``, so the eps to return is
    ``z / (alpha + sigma)`` and the step keeps ``y' = y``. Returns ``t``, ``y``, ``euler`` (``y'`` of the DDIM step,
    in the generic alpha, sigma symbols and the predictions ``x~ = x``, ``eps~ = eps_c``) and ``zero_eps``.
    """
    x_hat, eps_hat = sp.Symbol("x", real=True), eps_c
    t, t_next = sigma / (alpha + sigma), sigma_next / (alpha_next + sigma_next)
    y = z / (alpha + sigma)
    assert sp.simplify(((1 - t) * x_hat + t * eps_hat) - (alpha * x_hat + sigma * eps_hat) / (alpha + sigma)) == 0
    y_next = (alpha_next * x_hat + sigma_next * eps_hat) / (alpha_next + sigma_next)  # the DDIM step, rescaled
    y_here = (alpha * x_hat + sigma * eps_hat) / (alpha + sigma)
    euler = y_here + (t_next - t) * (eps_hat - x_hat)
    assert sp.simplify(y_next - euler) == 0
    zero_eps = z / (alpha + sigma)
    (solved,) = sp.solve(sp.Eq(z, alpha * x_hat + sigma * x_hat), x_hat)  # eps~ = x~ and z = alpha x~ + sigma eps~
    assert sp.simplify(solved - zero_eps) == 0
    y_after = (alpha_next * zero_eps + sigma_next * zero_eps) / (alpha_next + sigma_next)
    assert sp.simplify(y_after - y) == 0  # the zeroed step does not move y
    return {"t": t, "y": y, "euler": euler, "zero_eps": zero_eps}
