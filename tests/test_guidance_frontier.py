"""The guidance methods of issue 31 (minicfg.guidance_frontier): CFG++, APG, CFG-Zero*, a w schedule increasing in
lam, and independent-condition guidance, on the exact-score toy through the real samplers.

Every expected value is written out here: the papers' formulas with the toy's exact conditional and unconditional
eps, alpha^2 = sigmoid(lam) and sigma^2 = sigmoid(-lam) by hand, least squares by ``torch.linalg.lstsq``, and the
limits in which a method is CFG, the conditional or the unconditional model.
"""

import numpy as np
import pytest
import sympy as sp
import torch

from derivations import guidance_frontier as gf
from derivations.symbols import alpha, lam, lam_next, sigma, z
from derivations.symbols import w as w_symbol
from minicfg import cli, guidance, samplers, toy
from minicfg.guided import Guided
from minicfg.schedules import sampling_lams
from minicfg.sweep import read_csv

DT = torch.float64
MIX = toy.three_gaussians(dtype=DT)
LABELS = torch.tensor([0, 1, 2, 1, 0, 2])
COND, UNCOND = toy.eps_fn(MIX, LABELS), toy.eps_fn(MIX)

pytestmark = pytest.mark.usefixtures("one_thread")


def _alpha_sigma(value):
    value = torch.as_tensor(value, dtype=DT)
    return torch.sigmoid(value).sqrt(), torch.sigmoid(-value).sqrt()


def _z(n=6, seed=3):
    return 1.5 * torch.randn(n, 2, dtype=DT, generator=torch.Generator().manual_seed(seed))


def _lam(value, n=6):
    return torch.full((n,), float(value), dtype=DT)


def _cfg_by_hand(z_, lam_, w):
    return (1 + w) * COND(z_, lam_) - w * UNCOND(z_, lam_)


def _run(name, eps_fn, lams, z0=None, callback=None):
    z0 = _z() if z0 is None else z0
    return samplers.run_sampler(name, eps_fn, z0, lams, generator=torch.Generator().manual_seed(5), callback=callback)


def _states(name, eps_fn, lams):
    """The state z at every evaluated lam of a run, and its x-predictions."""
    zs, xs = [], []
    _run(name, eps_fn, lams, callback=lambda i, lam_i, z_i, x_i: (zs.append(z_i), xs.append(x_i)))
    return zs, xs


class Recording:
    """The toy mixture as a model that records the labels of every call and counts the rows it evaluates."""

    def __init__(self, mixture):
        self.mixture, self.num_classes, self.calls, self.rows = mixture, mixture.num_classes, [], 0

    def __call__(self, z_, lam_, labels):
        self.calls.append(labels.clone())
        self.rows += z_.shape[0]
        return self.mixture(z_, lam_, labels)


# ================================================================================================ CFG++
def test_cfgpp_one_ddim_step_is_the_papers_step():
    """x~ = (z - sigma (eps_u + l (eps_c - eps_u))) / alpha, z' = alpha' x~ + sigma' eps_u (Algorithm 1)."""
    l_value, z0 = 0.6, _z()
    fn = guidance.build_guidance("cfgpp", MIX, LABELS, guidance.w_from_guidance_scale(l_value))
    zs, xs = _states("ddim", fn, torch.tensor([-2.0, 0.5, 3.0], dtype=DT))
    (a0, s0), (a1, s1) = _alpha_sigma(-2.0), _alpha_sigma(0.5)
    e_c, e_u = COND(z0, _lam(-2.0)), UNCOND(z0, _lam(-2.0))
    x0 = (z0 - s0 * (e_u + l_value * (e_c - e_u))) / a0
    z1 = a1 * x0 + s1 * e_u
    torch.testing.assert_close(xs[0], x0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(zs[1], z1, rtol=1e-12, atol=1e-12)
    e_c, e_u = COND(z1, _lam(0.5)), UNCOND(z1, _lam(0.5))
    torch.testing.assert_close(xs[1], (z1 - s1 * (e_u + l_value * (e_c - e_u))) / a1, rtol=1e-12, atol=1e-12)


def test_cfgpp_returns_cfgs_eps_with_the_unconditional_renoise():
    z0, lam0 = _z(), _lam(0.3)
    out = guidance.build_guidance("cfgpp", MIX, LABELS, -0.3)(z0, lam0)
    assert isinstance(out, Guided)
    torch.testing.assert_close(out.eps, _cfg_by_hand(z0, lam0, -0.3))
    torch.testing.assert_close(out.renoise, UNCOND(z0, lam0))


def test_a_cfgpp_run_is_ddim_cfg_at_the_derived_per_step_w():
    """By derive_cfgpp_ddim, each CFG++ step is a DDIM CFG step at 1 + w = l / (1 - e^(-h)); the last evaluation
    only predicts x, with CFG at w = l - 1."""
    l_value = 0.5
    lams = sampling_lams(12, lam_min=-10.0, lam_max=10.0, dtype=DT)
    w_fn = sp.lambdify([gf.ell, lam, lam_next], gf.derive_cfgpp_ddim()["w"])
    per_step = {float(lo): float(w_fn(l_value, float(lo), float(hi))) for lo, hi in zip(lams[:-2], lams[1:-1],
                                                                                          strict=True)}
    per_step[float(lams[-2])] = l_value - 1

    def w_of_lam(lam_b):
        return per_step[float(lam_b[0])]

    cfgpp = guidance.build_guidance("cfgpp", MIX, LABELS, l_value - 1)
    zs, xs = _states("ddim", cfgpp, lams)
    zs_cfg, xs_cfg = _states("ddim", toy.cfg_eps_fn(MIX, LABELS, w_of_lam), lams)
    assert max(per_step.values()) > 1.0  # the derived w of the middle steps is far from CFG++'s own w = -0.5
    for a, b in zip(zs + xs[-1:], zs_cfg + xs_cfg[-1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["ddim", "ancestral", "heun"])
def test_cfgpp_at_l_zero_is_the_unconditional_model(name):
    lams = sampling_lams(8, dtype=DT)
    model = Recording(MIX)
    got = _run(name, guidance.build_guidance("cfgpp", model, LABELS, guidance.w_from_guidance_scale(0.0)), lams)
    torch.testing.assert_close(got, _run(name, UNCOND, lams), rtol=0, atol=0)
    assert all(bool((labels == 3).all()) for labels in model.calls)  # one pass, the null label only
    assert model.rows == len(LABELS) * samplers.network_evaluations(name, 8)


# ================================================================================================ APG
def _x_pred(z_, lam_value, eps):
    a, s = _alpha_sigma(lam_value)
    return (z_ - s * eps) / a


def _apg_by_hand(z_, lam_value, w, eta, space, diff=None):
    """The paper's Algorithm 1 written out: pred_c + w (D_perp + eta D_par), D_par the projection of D on pred_c."""
    lam_ = _lam(lam_value, z_.shape[0])
    e_c, e_u = COND(z_, lam_), UNCOND(z_, lam_)
    if space == "x":
        p_c, p_u = _x_pred(z_, lam_value, e_c), _x_pred(z_, lam_value, e_u)
    else:
        p_c, p_u = e_c, e_u
    d = p_c - p_u if diff is None else diff
    d_par = ((d * p_c).sum(1, keepdim=True) / (p_c * p_c).sum(1, keepdim=True)) * p_c
    guided = p_c + w * ((d - d_par) + eta * d_par)
    if space == "eps":
        return guided
    a, s = _alpha_sigma(lam_value)
    return (z_ - a * guided) / s  # eps of the guided x-prediction


@pytest.mark.parametrize("space", ["x", "eps"])
@pytest.mark.parametrize("lam_value", [-3.0, 0.0, 2.5])
def test_apg_with_eta_one_no_threshold_no_momentum_is_cfg(space, lam_value):
    z0, lam0 = _z(), _lam(lam_value)
    fn = guidance.build_guidance("apg", MIX, LABELS, 2.0, eta=1.0, norm_threshold=None, momentum=0.0, space=space)
    torch.testing.assert_close(fn(z0, lam0), _cfg_by_hand(z0, lam0, 2.0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["ddim", "ancestral"])
def test_an_apg_run_with_eta_one_is_a_cfg_run(name):
    lams = sampling_lams(10, dtype=DT)
    got = _run(name, guidance.build_guidance("apg", MIX, LABELS, 1.5, eta=1.0), lams)
    torch.testing.assert_close(got, _run(name, toy.cfg_eps_fn(MIX, LABELS, 1.5), lams), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("space", ["x", "eps"])
@pytest.mark.parametrize("eta", [0.0, 0.3])
def test_apg_down_weights_exactly_the_parallel_part(space, eta):
    z0 = _z()
    for lam_value in (-1.5, 1.0):
        got = guidance.build_guidance("apg", MIX, LABELS, 2.0, eta=eta, space=space)(z0, _lam(lam_value))
        torch.testing.assert_close(got, _apg_by_hand(z0, lam_value, 2.0, eta, space), rtol=1e-10, atol=1e-10)
        assert not torch.allclose(got, _cfg_by_hand(z0, _lam(lam_value), 2.0), atol=1e-3)


def test_apg_threshold_caps_the_update_norm_per_sample():
    z0, lam0, w = _z(), _lam(0.5), 2.0
    d = COND(z0, lam0) - UNCOND(z0, lam0)
    norms = d.norm(dim=1)
    r = float(norms.median())
    assert (norms > r * 1.01).any() and (norms < r * 0.99).any()
    fn = guidance.build_guidance("apg", MIX, LABELS, w, eta=1.0, norm_threshold=r, space="eps")
    update = (fn(z0, lam0) - COND(z0, lam0)) / w
    torch.testing.assert_close(update.norm(dim=1), torch.minimum(norms, torch.full_like(norms, r)))
    capped = d * torch.clamp(r / norms, max=1.0)[:, None]
    torch.testing.assert_close(update, capped)
    # the cap comes before the projection: eta = 0 projects the capped update
    fn0 = guidance.build_guidance("apg", MIX, LABELS, w, eta=0.0, norm_threshold=r, space="eps")
    torch.testing.assert_close(fn0(z0, lam0), _apg_by_hand(z0, 0.5, w, 0.0, "eps", diff=capped))


def test_apg_momentum_is_the_papers_recursion_and_starts_afresh_each_run():
    """M_1 = D_1, M_2 = D_2 + beta M_1; the guided eps is eps_c + w M (eta = 1, in eps space); begin clears M."""
    beta, w = -0.5, 1.5
    lams = sampling_lams(4, dtype=DT)
    fn = guidance.build_guidance("apg", MIX, LABELS, w, eta=1.0, momentum=beta, space="eps")
    z1, z2 = _z(seed=1), _z(seed=2)
    l1, l2 = _lam(lams[0]), _lam(lams[1])
    d1, d2 = COND(z1, l1) - UNCOND(z1, l1), COND(z2, l2) - UNCOND(z2, l2)
    fn.begin(lams)
    torch.testing.assert_close(fn(z1, l1), COND(z1, l1) + w * d1)
    torch.testing.assert_close(fn(z2, l2), COND(z2, l2) + w * (d2 + beta * d1))
    fn.begin(lams)
    torch.testing.assert_close(fn(z2, l2), COND(z2, l2) + w * d2)
    # through a sampler: two runs of one callable agree, and the momentum changes the samples
    first, second = _run("ddim", fn, sampling_lams(8, dtype=DT)), _run("ddim", fn, sampling_lams(8, dtype=DT))
    assert torch.equal(first, second)
    plain = _run("ddim", guidance.build_guidance("apg", MIX, LABELS, w, eta=1.0, space="eps"),
                 sampling_lams(8, dtype=DT))
    assert not torch.allclose(first, plain, atol=1e-3)


def test_apg_at_w_zero_is_the_conditional_model_and_options_are_checked():
    model = Recording(MIX)
    z0, lam0 = _z(), _lam(0.0)
    fn = guidance.build_guidance("apg", model, LABELS, 0.0, momentum=0.5, norm_threshold=1.0)
    torch.testing.assert_close(fn(z0, lam0), COND(z0, lam0), rtol=0, atol=0)
    assert model.rows == len(LABELS)
    for bad, match in ((dict(eta=float("nan")), "eta"), (dict(norm_threshold=0.0), "norm_threshold"),
                       (dict(momentum=1.0), "momentum"), (dict(space="v"), "space")):
        with pytest.raises(ValueError, match=match):
            guidance.build_guidance("apg", MIX, LABELS, 1.0, **bad)


def test_apg_update_is_the_derived_split():
    from minicfg.guidance_frontier import apg_update

    g = torch.Generator().manual_seed(4)
    c, u = (torch.randn(20, gf.N_COMPONENTS, dtype=DT, generator=g) for _ in range(2))
    fn = sp.lambdify([*gf.v_c, *gf.v_u, w_symbol, gf.eta], list(gf.derive_apg_split()["guided"]))
    for eta in (0.0, 0.4, 1.0):
        derived = torch.as_tensor(np.stack(fn(*c.T.numpy(), *u.T.numpy(), 2.0, eta), axis=1))
        torch.testing.assert_close(c + 2.0 * apg_update(c - u, c, eta, None), derived, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["cfgpp", "apg", "cfg_zero_star", "icg"])
def test_a_per_sample_w_guides_each_row_as_its_own_w(method):
    z0, lam0 = _z(), _lam(0.4)
    ws = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0, 3.0], dtype=DT)
    options = {"zero_init_steps": 0} if method == "cfg_zero_star" else {}

    def eps_of(out):
        return out.eps if isinstance(out, Guided) else out

    got = eps_of(guidance.build_guidance(method, MIX, LABELS, ws, **options)(z0, lam0))
    for i, w_i in enumerate(ws.tolist()):
        row = eps_of(guidance.build_guidance(method, MIX, LABELS, w_i, **options)(z0, lam0))[i]
        torch.testing.assert_close(got[i], row, rtol=1e-12, atol=1e-12)


# ================================================================================================ CFG-Zero*
def _lstsq_scale(c, u):
    """min_s ||c - s u||^2 per sample, by torch's least squares."""
    return torch.stack([torch.linalg.lstsq(u[i].reshape(-1, 1), c[i].reshape(-1, 1)).solution.squeeze()
                        for i in range(c.shape[0])])


@pytest.mark.parametrize("shape", [(7, 2), (4, 3, 5, 5)])
def test_optimized_scale_is_the_least_squares_fit(shape):
    from minicfg.guidance_frontier import optimized_scale

    g = torch.Generator().manual_seed(0)
    c, u = torch.randn(shape, dtype=DT, generator=g), torch.randn(shape, dtype=DT, generator=g)
    torch.testing.assert_close(optimized_scale(c, u), _lstsq_scale(c, u), rtol=1e-10, atol=1e-12)


def test_optimized_scale_is_the_derived_s_star():
    from minicfg.guidance_frontier import optimized_scale

    g = torch.Generator().manual_seed(1)
    c, u = (torch.randn(7, gf.N_COMPONENTS, dtype=DT, generator=g) for _ in range(2))
    derived = sp.lambdify([*gf.v_c, *gf.v_u], gf.derive_cfg_zero_scale()["s_star"])(*c.T.numpy(), *u.T.numpy())
    torch.testing.assert_close(optimized_scale(c, u), torch.as_tensor(derived), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lam_value", [-4.0, 0.0, 3.0])
def test_cfg_zero_star_scales_the_unconditional_eps_by_s_star(lam_value):
    z0, lam0, w = _z(), _lam(lam_value), 2.0
    e_c, e_u = COND(z0, lam0), UNCOND(z0, lam0)
    s = _lstsq_scale(e_c, e_u)[:, None]
    got = guidance.build_guidance("cfg_zero_star", MIX, LABELS, w, zero_init_steps=0)(z0, lam0)
    torch.testing.assert_close(got, s * e_u + (1 + w) * (e_c - s * e_u), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(got, _cfg_by_hand(z0, lam0, w), atol=1e-4)


@pytest.mark.parametrize("name", ["ddim", "ancestral", "heun"])
def test_cfg_zero_star_with_unit_scale_and_no_zeroed_steps_is_cfg(name):
    lams = sampling_lams(8, dtype=DT)
    fn = guidance.build_guidance("cfg_zero_star", MIX, LABELS, 2.0, zero_init_steps=0, scaled=False)
    torch.testing.assert_close(_run(name, fn, lams), _run(name, toy.cfg_eps_fn(MIX, LABELS, 2.0), lams),
                               rtol=1e-12, atol=1e-12)


def test_cfg_zero_stars_first_steps_have_zero_flow_velocity():
    """In the zeroed steps x~ = eps~ = z / (alpha + sigma), so DDIM keeps y = z / (alpha + sigma); then CFG-Zero*."""
    k, w = 2, 1.5
    lams = sampling_lams(6, dtype=DT)
    model = Recording(MIX)
    zs, xs = _states("ddim", guidance.build_guidance("cfg_zero_star", model, LABELS, w, zero_init_steps=k), lams)
    ys = []
    for i in range(k + 1):
        a, s = _alpha_sigma(lams[i])
        ys.append(zs[i] / (a + s))
        if i < k:
            # the sampler's x~ = (z - sigma eps~) / alpha: rounding times 1 / alpha (2e4 at lam = -20)
            torch.testing.assert_close(xs[i], zs[i] / (a + s), rtol=1e-9, atol=1e-9)
    for y in ys[1:]:
        torch.testing.assert_close(y, ys[0], rtol=1e-12, atol=1e-12)  # the state has not moved in flow terms
    e_c, e_u = COND(zs[k], _lam(lams[k])), UNCOND(zs[k], _lam(lams[k]))
    s_star = _lstsq_scale(e_c, e_u)[:, None]
    a, s = _alpha_sigma(lams[k])
    torch.testing.assert_close(xs[k], (zs[k] - s * ((1 + w) * e_c - w * s_star * e_u)) / a)
    assert model.rows == 2 * len(LABELS) * (len(lams) - 1 - k)  # the zeroed steps call no network


def test_zero_velocity_is_the_derived_eps_and_ddim_is_euler_on_the_rectified_flow():
    d = gf.derive_zero_velocity()
    zero = sp.lambdify([z, alpha, sigma], d["zero_eps"])
    a, s = _alpha_sigma(0.7)
    z0 = _z()
    torch.testing.assert_close(torch.as_tensor(zero(z0.numpy(), float(a), float(s))), z0 / (a + s))
    # one DDIM step of the library, rescaled to y, is y + (t' - t)(eps - x) with t = sigma / (alpha + sigma)
    seen = {}
    samplers.ddim(COND, z0, torch.tensor([0.7, 2.0, 3.0], dtype=DT),
                  callback=lambda i, l_, z_, x_: seen.update({i: z_}))
    (a1, s1) = _alpha_sigma(2.0)
    e = COND(z0, _lam(0.7))
    x = (z0 - s * e) / a
    euler = z0 / (a + s) + (s1 / (a1 + s1) - s / (a + s)) * (e - x)
    torch.testing.assert_close(seen[1] / (a1 + s1), euler, rtol=1e-12, atol=1e-12)


def test_cfg_zero_star_needs_the_grid_and_checks_its_options():
    fn = guidance.build_guidance("cfg_zero_star", MIX, LABELS, 1.0, zero_init_steps=1)
    with pytest.raises(ValueError, match="begin"):
        fn(_z(), _lam(0.0))
    with pytest.raises(ValueError, match="every one of the 3 steps"):
        _run("ddim", guidance.build_guidance("cfg_zero_star", MIX, LABELS, 1.0, zero_init_steps=3),
             sampling_lams(3, dtype=DT))
    with pytest.raises(ValueError, match="zero_init_steps"):
        guidance.build_guidance("cfg_zero_star", MIX, LABELS, 1.0, zero_init_steps=-1)
    with pytest.raises(ValueError, match="scaled"):
        guidance.build_guidance("cfg_zero_star", MIX, LABELS, 1.0, scaled="yes")
    # w = 0 outside the zeroed steps is the conditional model
    lams = sampling_lams(5, dtype=DT)
    got = _run("ddim", guidance.build_guidance("cfg_zero_star", MIX, LABELS, 0.0, zero_init_steps=0), lams)
    torch.testing.assert_close(got, _run("ddim", COND, lams), rtol=0, atol=0)


# ================================================================================================ w schedule
class ImpliedW:
    """Wraps a guided eps-callable; at each evaluation reads its w from the output, w = <eps - c, c - u> / |c - u|^2
    (exact for eps = c + w (c - u)), per sample."""

    def __init__(self, fn):
        self.fn, self.lams, self.ws = fn, [], []

    def begin(self, lams):
        self.fn.begin(lams)

    def __call__(self, z_, lam_):
        out = self.fn(z_, lam_)
        c, u = COND(z_, lam_), UNCOND(z_, lam_)
        self.lams.append(float(lam_[0]))
        self.ws.append(((out - c) * (c - u)).sum(1) / ((c - u) ** 2).sum(1))
        return out


@pytest.mark.parametrize("shape", ["ramp", "sigmoid"])
def test_the_w_schedule_keeps_its_mean_over_the_steps_and_grows_in_lam(shape):
    n_steps, w_mean = 10, 2.0
    lams = sampling_lams(n_steps, dtype=DT)
    spy = ImpliedW(guidance.build_guidance("w_schedule", MIX, LABELS, w_mean, shape=shape))
    _run("ddim", spy, lams)
    ws = torch.stack(spy.ws)  # (steps, samples)
    assert spy.lams == lams[:-1].tolist()
    torch.testing.assert_close(ws.mean(0), torch.full((6,), w_mean, dtype=DT), rtol=1e-8, atol=1e-8)
    assert bool((ws[1:] > ws[:-1]).all())
    # the normalisation written out: w_i = w n g_i / sum_j g_j over the evaluated lams
    evaluated = lams[:-1].numpy()
    if shape == "ramp":
        g = (evaluated - evaluated[0]) / (lams[-1].item() - evaluated[0])
    else:
        g = 1 / (1 + np.exp(-evaluated))
    np.testing.assert_allclose(ws[:, 0].numpy(), w_mean * len(g) * g / g.sum(), rtol=1e-8, atol=1e-8)
    d = gf.derive_w_schedule(len(g))  # the derivation's c = n w / sum_i g_i
    c = float(d["c_grid"].subs({gf.w_bar: w_mean, **dict(zip(d["g_values"], g.tolist(), strict=True))}))
    np.testing.assert_allclose(ws[:, 0].numpy(), c * g, rtol=1e-8, atol=1e-8)


def test_a_per_sample_w_schedule_keeps_each_samples_mean():
    lams = sampling_lams(6, dtype=DT)
    w_bar = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.0, 1.5], dtype=DT)
    spy = ImpliedW(guidance.build_guidance("w_schedule", MIX, LABELS, w_bar))
    _run("ddim", spy, lams)
    ws = torch.stack(spy.ws)
    torch.testing.assert_close(ws[:, :4].mean(0), w_bar[:4], rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ws[:, 4], torch.zeros(len(lams) - 1, dtype=DT), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["ddim", "ancestral", "heun"])
def test_a_constant_w_schedule_is_cfg(name):
    lams = sampling_lams(8, dtype=DT)
    got = _run(name, guidance.build_guidance("w_schedule", MIX, LABELS, 2.0, shape="constant"), lams)
    torch.testing.assert_close(got, _run(name, toy.cfg_eps_fn(MIX, LABELS, 2.0), lams), rtol=1e-12, atol=1e-12)


def test_the_w_schedule_needs_the_grid_and_a_plain_w():
    with pytest.raises(ValueError, match="begin"):
        guidance.build_guidance("w_schedule", MIX, LABELS, 1.0)(_z(), _lam(0.0))
    with pytest.raises(ValueError, match="number or a per-sample tensor"):
        guidance.build_guidance("w_schedule", MIX, LABELS, lambda lam_: 1.0)
    with pytest.raises(ValueError, match="shape must be one of"):
        guidance.build_guidance("w_schedule", MIX, LABELS, 1.0, shape="cosine")
    with pytest.raises(ValueError, match="zero at every evaluated lam"):
        _run("ddim", guidance.build_guidance("w_schedule", MIX, LABELS, 1.0), sampling_lams(1, dtype=DT))


# ================================================================================================ ICG
def test_icg_draws_another_label_per_sample_reproducibly():
    labels = torch.arange(3).repeat(1000)
    z0 = torch.zeros(len(labels), 2, dtype=DT)

    def others(seed):
        model = Recording(MIX)
        guidance.build_guidance("icg", model, labels, 1.0, label_seed=seed)(z0, _lam(0.0, len(labels)))
        (call,) = model.calls  # one doubled batch: the labels, then the other labels
        assert torch.equal(call[:len(labels)], labels)
        return call[len(labels):]

    other = others(7)
    assert bool((other != labels).all()) and bool((other < 3).all())
    assert torch.equal(others(7), other) and not torch.equal(others(8), other)
    for c in range(3):  # uniform over the two other classes: within 5 binomial sd of half
        picked = other[labels == c]
        share = float((picked == (c + 1) % 3).double().mean())
        assert abs(share - 0.5) < 5 * (0.25 / len(picked)) ** 0.5


def _two_gaussians(same=False):
    means = torch.tensor([[1.5, 0.0], [1.5, 0.0] if same else [-1.0, 1.0]], dtype=DT)
    covs = torch.stack([torch.eye(2, dtype=DT), torch.eye(2, dtype=DT) * (1.0 if same else 0.5)])
    return toy.GaussianMixture(means, covs, torch.tensor([0.5, 0.5], dtype=DT))


@pytest.mark.parametrize("name", ["ddim", "ancestral"])
def test_icg_with_two_classes_guides_away_from_the_other_class(name):
    """Two classes: the other label is the other class, eps~ = (1 + w) eps(z, c) - w eps(z, 1 - c), by hand."""
    mix, labels, w = _two_gaussians(), torch.tensor([0, 1, 1, 0, 1, 0]), 2.0
    lams = sampling_lams(8, dtype=DT)

    def by_hand(z_, lam_):
        return (1 + w) * mix.eps(z_, lam_, labels) - w * mix.eps(z_, lam_, 1 - labels)

    z0, lam0 = _z(), _lam(-0.5)
    fn = guidance.build_guidance("icg", mix, labels, w, label_seed=3)
    torch.testing.assert_close(fn(z0, lam0), by_hand(z0, lam0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_run(name, fn, lams), _run(name, by_hand, lams), rtol=1e-12, atol=1e-12)


def test_icg_between_identical_classes_is_the_conditional_model():
    """When every class has the same density, eps(z, c') = eps(z, c): ICG at any w samples the conditional model."""
    mix, labels = _two_gaussians(same=True), torch.tensor([0, 1, 1, 0, 1, 0])
    lams = sampling_lams(8, dtype=DT)
    cond = _run("ancestral", toy.eps_fn(mix, labels), lams)
    for w in (0.0, 3.0):
        got = _run("ancestral", guidance.build_guidance("icg", mix, labels, w), lams)
        torch.testing.assert_close(got, cond, rtol=1e-10, atol=1e-10)


def test_icg_at_w_zero_is_one_conditional_pass_and_needs_real_labels():
    model = Recording(MIX)
    z0, lam0 = _z(), _lam(0.0)
    torch.testing.assert_close(guidance.build_guidance("icg", model, LABELS, 0.0)(z0, lam0), COND(z0, lam0))
    assert len(model.calls) == 1 and torch.equal(model.calls[0], LABELS)
    with pytest.raises(ValueError, match="label"):
        guidance.build_guidance("icg", MIX, torch.tensor([0, 3, 1, 1, 0, 2]), 1.0)  # 3 is the null label
    one_class = toy.GaussianMixture(torch.zeros(1, 2, dtype=DT), torch.eye(2, dtype=DT)[None], torch.ones(1, dtype=DT))
    with pytest.raises(ValueError, match="at least two classes"):
        guidance.build_guidance("icg", one_class, torch.zeros(6, dtype=torch.long), 1.0)


# ================================================================================================ the commands
@pytest.mark.parametrize(("method", "flags"), [
    ("cfgpp", []),
    ("apg", ["--eta", "0.5", "--norm-threshold", "20", "--momentum", "-0.5", "--space", "eps"]),
    ("cfg_zero_star", ["--zero-init-steps", "2", "--scaled", "False"]),
    ("w_schedule", ["--shape", "sigmoid"]),
    ("icg", ["--label-seed", "4"]),
])
def test_cli_samples_with_each_method_and_its_flags(method, flags, tmp_path):
    out = tmp_path / "r.npz"
    w = "-0.5" if method == "cfgpp" else "1"
    assert cli.main(["sample", "--guidance", method, *flags, "--w", w, "--n-per-class", "1", "--n-steps", "3",
                     "--no-progress", "--out", str(out)]) == 0
    assert np.load(out)["images"].shape == (10, 1, 28, 28)


def test_cli_sweeps_a_method_and_records_its_options(tmp_path):
    assert cli.main(["sweep", "--guidance", "apg", "--eta", "0.5", "--momentum", "-0.5", "--w", "1",
                     "--n-per-class", "1", "--n-steps", "2", "--paper", "none", "--no-progress",
                     "--out", str(tmp_path / "s")]) == 0
    (row,) = read_csv(tmp_path / "s" / "sweep.csv")
    assert row["guidance"] == "apg"
    assert row["options"] == "eta=0.5 momentum=-0.5 space=x"  # the defaults that ran, None (no threshold) left out


def test_a_flag_that_several_methods_take_names_each_and_its_default(registered, capsys):
    def probe(model, labels, w, *, space: str = "eps", eta: float = 0.25):
        """A toy method sharing apg's flags with other defaults."""
        return lambda z_, lam_: z_

    guidance.add_guidance(guidance.GuidanceMethod("probe", probe))
    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--space SPACE option of --guidance rescale (default 'x'), apg (default 'x'), probe (default 'eps')" in text
    assert "--eta ETA option of --guidance apg (default 0.0), probe (default 0.25)" in text
