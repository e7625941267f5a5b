"""derivations.guidance_frontier (issue 31) against formulas written out here and against the library.

Each derived expression is ``lambdify``-ed and compared on random float64 inputs with the same statement computed
another way: one DDIM step of ``minicfg.samplers.ddim`` with the toy's exact eps, least squares by
``torch.linalg.lstsq``, ``minicfg.guidance.cfg``, a projection written with dot products, and the quadrature of
``minicfg.tilted``.
"""

import math

import numpy as np
import pytest
import sympy as sp
import torch

from derivations import guidance_frontier as gf
from derivations.symbols import eps_c, eps_u, lam, lam_max, lam_min, lam_next, w
from minicfg import toy
from minicfg.guidance import cfg
from minicfg.samplers import ddim
from minicfg.schedules import alpha_sigma, sampling_lams
from minicfg.tilted import tilted_on_grid

DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _vectors(seed: int, n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, gf.N_COMPONENTS, dtype=DT, generator=g) for _ in range(2))


def _of_vectors(expr):
    """``lambdify`` an expression of the components of ``v_c``, ``v_u`` (and w, eta) into a function of rows."""
    fn = sp.lambdify([*gf.v_c, *gf.v_u, w, gf.eta], expr, modules="numpy")
    return lambda c, u, w_=0.0, eta_=0.0: fn(*c.T.numpy(), *u.T.numpy(), w_, eta_)


# ------------------------------------------------------------------ CFG++ in a DDIM step


@pytest.mark.parametrize(("lo", "hi", "l_value"), [(-2.0, 0.0, 0.6), (0.5, 1.5, 0.3), (-6.0, 3.0, 1.0)])
def test_cfgpp_step_is_a_ddim_cfg_step_at_the_derived_scale(lo, hi, l_value):
    d = gf.derive_cfgpp_ddim()
    w_equiv = float(d["w"].subs({gf.ell: l_value, lam: lo, lam_next: hi}))
    # the scale written out: 1 + w = l / (1 - e^(-h)), h = (lam' - lam) / 2
    assert 1 + w_equiv == pytest.approx(l_value / (1 - math.exp(-(hi - lo) / 2)), rel=1e-12)
    mix = toy.three_gaussians()
    g = torch.Generator().manual_seed(0)
    z = 1.5 * torch.randn(64, 2, dtype=DT, generator=g)
    labels = torch.randint(0, 3, (64,), generator=g)
    # CFG++ by hand: x from eps_u + l (eps_c - eps_u), renoised with eps_u
    lam_t = torch.full((64,), lo, dtype=DT)
    e_c, e_u = mix.eps(z, lam_t, labels), mix.eps(z, lam_t, None)
    (a, s), (a_n, s_n) = alpha_sigma(torch.tensor(lo, dtype=DT)), alpha_sigma(torch.tensor(hi, dtype=DT))
    x = (z - s * (e_u + l_value * (e_c - e_u))) / a
    expected = a_n * x + s_n * e_u
    # the library's DDIM with CFG at the derived w: the state it reaches at lam'
    seen = {}
    ddim(toy.cfg_eps_fn(mix, labels, w_equiv), z, torch.tensor([lo, hi, hi + 1.0], dtype=DT),
         callback=lambda i, lam_i, z_i, x_i: seen.setdefault(i, z_i))
    torch.testing.assert_close(seen[1], expected, rtol=1e-10, atol=1e-10)


def test_cfgpp_trajectory_is_ddim_with_a_per_step_w():
    # a whole CFG++ run, written out, against the library's DDIM with w(lam) from the derived scale at each step
    l_value, mix = 0.5, toy.three_gaussians()
    lams = sampling_lams(20, lam_min=-10.0, lam_max=10.0, dtype=DT)
    w_fn = sp.lambdify([gf.ell, lam, lam_next], gf.derive_cfgpp_ddim()["w"])
    w_of = {float(lo): float(w_fn(l_value, float(lo), float(hi))) for lo, hi in zip(lams[:-1], lams[1:], strict=True)}
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(32, 2, dtype=DT, generator=g)
    labels = torch.randint(0, 3, (32,), generator=g)
    seen = {}
    ddim(toy.cfg_eps_fn(mix, labels, lambda lam_b: w_of[float(lam_b[0])]), z0, lams,
         callback=lambda i, lam_i, z_i, x_i: seen.setdefault(i, z_i))
    z = z0
    for i in range(len(lams) - 2):
        (a, s), (a_n, s_n) = alpha_sigma(lams[i]), alpha_sigma(lams[i + 1])
        lam_b = lams[i].expand(32)
        e_c, e_u = mix.eps(z, lam_b, labels), mix.eps(z, lam_b, None)
        z = a_n * (z - s * (e_u + l_value * (e_c - e_u))) / a + s_n * e_u
        torch.testing.assert_close(seen[i + 1], z, rtol=1e-9, atol=1e-9)


def test_cfgpp_scale_grows_as_steps_shrink():
    scale = sp.lambdify([gf.ell, gf.h], gf.derive_cfgpp_ddim()["scale"])
    hs = np.array([0.01, 0.1, 1.0, 10.0])
    values = scale(0.5, hs)
    assert (np.diff(values) < 0).all() and values[0] == pytest.approx(0.5 / 0.01, rel=0.01)


# ------------------------------------------------------------------ CFG-Zero*


def test_cfg_zero_scale_is_the_least_squares_scale():
    c, u = _vectors(1)
    s_star = _of_vectors(gf.derive_cfg_zero_scale()["s_star"])(c, u)
    for i in range(c.shape[0]):  # min_s ||c - s u||^2 by least squares
        lstsq = torch.linalg.lstsq(u[i][:, None], c[i][:, None]).solution.item()
        assert s_star[i] == pytest.approx(lstsq, rel=1e-10)
    loss = sp.lambdify([*gf.v_c, *gf.v_u, gf.s], gf.derive_cfg_zero_scale()["loss"])
    at = loss(*c.T.numpy(), *u.T.numpy(), s_star)
    for delta in (-1e-3, 1e-3):
        assert (loss(*c.T.numpy(), *u.T.numpy(), s_star + delta) > at).all()


def test_cfg_zero_guided_is_cfg_at_unit_scale():
    guided = sp.lambdify([eps_c, eps_u, gf.s, w], gf.derive_cfg_zero_scale()["guided"])
    c, u = _vectors(2)
    torch.testing.assert_close(torch.as_tensor(guided(c.numpy(), u.numpy(), 1.0, 2.5)), cfg(c, u, 2.5))
    # s* v_u + (1 + w)(v_c - s* v_u) written out
    torch.testing.assert_close(torch.as_tensor(guided(c.numpy(), u.numpy(), 0.4, 2.5)), 0.4 * u + 3.5 * (c - 0.4 * u))


# ------------------------------------------------------------------ APG


def test_apg_split_is_the_projection_on_the_conditional_prediction():
    d = gf.derive_apg_split()
    c, u = _vectors(3)
    update = c - u
    by_hand = ((update * c).sum(1) / (c * c).sum(1))[:, None] * c
    parallel = np.stack(_of_vectors(list(d["parallel"]))(c, u), axis=1)
    orthogonal = np.stack(_of_vectors(list(d["orthogonal"]))(c, u), axis=1)
    np.testing.assert_allclose(parallel, by_hand.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(parallel + orthogonal, update.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((parallel * orthogonal).sum(1), 0.0, atol=1e-10)


@pytest.mark.parametrize("w_value", [0.0, 1.0, 4.0])
def test_apg_at_eta_one_is_cfg(w_value):
    guided = _of_vectors(list(gf.derive_apg_split()["guided"]))
    c, u = _vectors(4)
    apg = torch.as_tensor(np.stack(guided(c, u, w_value, 1.0), axis=1))
    torch.testing.assert_close(apg, cfg(c, u, w_value))
    if w_value > 0:  # eta = 0 drops the parallel part: no longer CFG
        assert (torch.as_tensor(np.stack(guided(c, u, w_value, 0.0), axis=1)) - cfg(c, u, w_value)).abs().max() > 0.1


@pytest.mark.parametrize("eta_value", [0.0, 0.3])
def test_apg_down_weights_only_the_parallel_part(eta_value):
    # written out: CFG minus (1 - eta) w times the projection of D = c - u on c
    guided = _of_vectors(list(gf.derive_apg_split()["guided"]))
    c, u = _vectors(5)
    d_par = ((c - u) * c).sum(1, keepdim=True) / (c * c).sum(1, keepdim=True) * c
    apg = torch.as_tensor(np.stack(guided(c, u, 2.0, eta_value), axis=1))
    torch.testing.assert_close(apg, cfg(c, u, 2.0) - (1 - eta_value) * 2.0 * d_par)


# ------------------------------------------------------------------ the Gaussian tilt


@pytest.mark.parametrize("w_value", [0.0, 1.0, 3.0])
def test_gaussian_tilt_moments_match_the_quadrature(w_value):
    d = gf.derive_gaussian_tilt()
    params = {gf.m1: 0.5, gf.s1: 0.7, gf.m0: -1.0, gf.s0: 2.0, w: w_value}
    mean, var = float(d["mean"].subs(params)), float(d["var"].subs(params))
    # written out: precision (1+w)/s1^2 - w/s0^2, mean ((1+w) m1/s1^2 - w m0/s0^2) / precision
    prec = (1 + w_value) / 0.49 - w_value / 4.0
    assert 1 / var == pytest.approx(prec, rel=1e-12)
    assert mean == pytest.approx(((1 + w_value) * 0.5 / 0.49 + w_value * 1.0 / 4.0) / prec, rel=1e-12)

    def log_normal(m, s_):
        return lambda x: -0.5 * ((x - m) / s_) ** 2

    grid = tilted_on_grid(log_normal(0.5, 0.7), log_normal(-1.0, 2.0), w_value, np.linspace(-10, 10, 40001))
    got_mean, got_std = grid.mean_std()
    assert got_mean == pytest.approx(mean, abs=1e-7) and got_std == pytest.approx(var**0.5, abs=1e-7)


# ------------------------------------------------------------------ a w schedule with a given mean


@pytest.mark.parametrize("shape", ["sigmoid", "ramp"])
def test_w_schedule_keeps_the_mean_over_the_evaluated_lams(shape):
    n_steps, w_mean = 12, 2.0
    evaluated = sampling_lams(n_steps, dtype=DT)[:-1]  # the samplers evaluate every grid point but the last
    d = gf.derive_w_schedule(len(evaluated))
    g_fn = sp.lambdify([lam, lam_min, lam_max], d[shape])
    g_vals = np.asarray(g_fn(evaluated.numpy(), -20.0, 20.0), dtype=np.float64) * np.ones(len(evaluated))
    c = float(d["c_grid"].subs({gf.w_bar: w_mean, **dict(zip(d["g_values"], g_vals.tolist(), strict=True))}))
    schedule = c * g_vals
    assert schedule.mean() == pytest.approx(w_mean, rel=1e-12)
    assert (np.diff(schedule) > 0).all()  # increasing towards the data end


def test_uniform_ramp_has_twice_the_mean_at_the_data_end():
    c = float(gf.derive_w_schedule()["c_uniform_ramp"].subs(gf.w_bar, 1.5))
    lams = np.linspace(-10.0, 8.0, 100001)
    ramp = c * (lams + 10.0) / 18.0
    assert np.trapezoid(ramp, lams) / 18.0 == pytest.approx(1.5, rel=1e-9) and ramp[-1] == pytest.approx(3.0)
