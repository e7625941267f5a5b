"""Tie the sympy derivations (``derivations/``) to the library (``minicfg``) numerically.

Each derivation asserts its identity when run; here every formula the library implements is
``lambdify``-ed from its derived sympy expression and compared with the torch function on random
float64 inputs, including log-SNRs across [-20, 20].
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch

import derivations
from derivations import elbo, forward, guidance, posterior, schedules, score
from derivations.symbols import (
    alpha,
    eps,
    eps_c,
    eps_u,
    grad_log_cls,
    lam,
    lam_max,
    lam_min,
    lam_next,
    sigma,
    u,
    v,
    w,
    x,
    z,
    z_next,
)
from minicfg import diffusion as D
from minicfg import guidance as G
from minicfg import schedules as S

ROOT = Path(__file__).resolve().parents[1]
N = 300
RTOL, ATOL = 1e-9, 1e-12


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _uniform(lo: float, hi: float, seed: int, n: int = N) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=_gen(seed), dtype=torch.float64)


def _normal(seed: int, n: int = N) -> torch.Tensor:
    return torch.randn(n, generator=_gen(seed), dtype=torch.float64)


def _lam_pairs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random lam < lam' in [-20, 20], at least 1e-3 apart."""
    a, b = _uniform(-20, 20, seed), _uniform(-20, 20, seed + 1)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    keep = hi - lo > 1e-3
    return lo[keep], hi[keep]


def _f(expr, *args):
    """``lambdify`` an expression of ``args`` into a numpy function of float64 tensors."""
    fn = sp.lambdify(args, expr, modules="numpy")
    return lambda *values: torch.tensor(
        np.broadcast_to(fn(*(t.numpy() for t in values)), values[0].shape), dtype=torch.float64
    )


def _close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- (a) every derivation runs


@pytest.mark.parametrize("name", sorted(derivations.DERIVATIONS))
def test_derivation_runs_and_returns_sympy(name):
    result = derivations.DERIVATIONS[name]()  # asserts its identity inside
    assert isinstance(result, dict) and result
    flat = [e for value in result.values() for e in (value if isinstance(value, (list, tuple)) else [value])]
    assert all(isinstance(e, sp.Basic) for e in flat), name


def test_run_all_names():
    assert set(derivations.run_all()) == set(derivations.DERIVATIONS)


def test_derived_results_have_the_expected_content():
    d = forward.derive_alpha_sigma()
    assert sp.simplify(d["alpha2"] + d["sigma2"] - 1) == 0
    assert sp.simplify(d["alpha"] ** 2 - d["alpha2"]) == 0
    assert forward.derive_transition()["var"].free_symbols == {lam, lam_next}
    post = posterior.derive_posterior()
    assert post["var"].free_symbols == {lam, lam_next}
    assert post["mean"].free_symbols == {lam, lam_next, z, x}
    assert posterior.derive_reverse_variance()["var"].free_symbols == {lam, lam_next, v}
    assert sp.simplify(score.derive_conditional_score()["score"] + eps / sigma) == 0
    c = schedules.derive_cosine_schedule()
    assert c["lam"].free_symbols == {u, lam_min, lam_max}
    assert sp.simplify(c["alpha2_untruncated"].subs(u, 0)) == 1  # u = 0 is data
    assert sp.simplify(c["alpha2_untruncated"].subs(u, 1)) == 0  # u = 1 is pure noise
    assert sp.simplify(guidance.derive_cfg()["cfg"].subs(w, 0) - eps_c) == 0  # w = 0: conditional
    assert sp.simplify(guidance.derive_cfg()["cfg"].subs(w, -1) - eps_u) == 0  # w = -1: unconditional
    # the density of the untruncated cosine schedule integrates to one over the real line
    assert sp.integrate(schedules.derive_cosine_density()["untruncated"], (lam, -sp.oo, sp.oo)) == 1


def test_derivations_import_neither_torch_nor_minicfg():
    code = (
        "import sys, derivations; derivations.run_all(); "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'minicfg'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---------------------------------------------------------------- (b) ties to minicfg


def test_alpha_sigma():
    d = forward.derive_alpha_sigma()
    lam_t = torch.cat([_uniform(-20, 20, 3), torch.tensor([-20.0, 0.0, 20.0], dtype=torch.float64)])
    alpha, sigma_ = S.alpha_sigma(lam_t)
    _close(alpha, _f(d["alpha"], lam)(lam_t))
    _close(sigma_, _f(d["sigma"], lam)(lam_t))


@pytest.mark.parametrize("lam_range", [(-20.0, 20.0), (-10.0, 5.0), (-3.0, 12.0)])
def test_log_snr_cosine(lam_range):
    expr = schedules.derive_cosine_schedule()["lam"].subs({lam_min: lam_range[0], lam_max: lam_range[1]})
    u_t = torch.cat([_uniform(0, 1, 4), torch.tensor([0.0, 1.0], dtype=torch.float64)])
    _close(S.log_snr_cosine(u_t, *lam_range), _f(expr, u)(u_t), atol=1e-9)


def test_log_snr_cosine_density_matches_histogram():
    lo, hi = -20.0, 20.0
    density = _f(schedules.derive_cosine_density()["density"].subs({lam_min: lo, lam_max: hi}), lam)
    samples = S.log_snr_cosine(torch.rand(200_000, generator=_gen(5), dtype=torch.float64), lo, hi)
    counts, edges = torch.histogram(samples, bins=20, range=(lo, hi))
    centres, width = (edges[1:] + edges[:-1]) / 2, edges[1] - edges[0]
    # bins are wide: compare probabilities per bin with the midpoint rule, within sampling noise
    _close(counts / samples.numel(), density(centres) * width, rtol=0.05, atol=2e-3)


@pytest.mark.parametrize(("n", "b0", "b1"), [(1000, "1e-4", "0.02"), (50, "1e-3", "0.05")])
def test_ddpm_log_snr(n, b0, b1):
    ts = sorted({1, 2, 10, n // 2, n - 1, n})
    exact = torch.tensor([float(value) for value in schedules.ddpm_log_snr_values(ts, n, b0, b1)], dtype=torch.float64)
    lib = S.ddpm_log_snr(n, float(b0), float(b1), dtype=torch.float64)[torch.tensor(ts) - 1]
    _close(lib, exact, atol=1e-10)


def test_q_transition():
    d = forward.derive_transition()
    lo, hi = _lam_pairs(6)
    z_src = _normal(7, lo.numel())
    mean, var = D.q_transition(z_src, lo, hi)
    _close(mean, _f(d["mean"], z_next, lam, lam_next)(z_src, lo, hi))
    _close(var, _f(d["var"], lam, lam_next)(lo, hi))


def test_posterior():
    d = posterior.derive_posterior()
    lo, hi = _lam_pairs(8)
    z_t, x_t = _normal(9, lo.numel()), _normal(10, lo.numel())
    mean, var = D.posterior(z_t, x_t, lo, hi)
    _close(mean, _f(d["mean"], z, x, lam, lam_next)(z_t, x_t, lo, hi))
    _close(var, _f(d["var"], lam, lam_next)(lo, hi))


@pytest.mark.parametrize("v_value", [0.0, 0.3, 0.75, 1.0])
def test_reverse_variance(v_value):
    expr = posterior.derive_reverse_variance()["var"].subs(v, v_value)
    lo, hi = _lam_pairs(11)
    _close(D.reverse_variance(lo, hi, v_value), _f(expr, lam, lam_next)(lo, hi))


def test_x_from_eps_and_eps_from_x():
    d = forward.derive_x_eps()
    lam_t, z_t, e_t, x_t = _uniform(-20, 20, 12), _normal(13), _normal(14), _normal(15)
    _close(D.x_from_eps(z_t, lam_t, e_t), _f(d["x"], z, lam, eps)(z_t, lam_t, e_t))
    _close(D.eps_from_x(z_t, lam_t, x_t), _f(d["eps"], z, lam, x)(z_t, lam_t, x_t))


def test_score_from_eps():
    expr = score.derive_conditional_score()["score_lam"]
    lam_t, e_t = _uniform(-20, 20, 16), _normal(17)
    _close(D.score_from_eps(e_t, lam_t), _f(expr, eps, lam)(e_t, lam_t))


@pytest.mark.parametrize("per_sample", [False, True])
def test_cfg(per_sample):
    expr = guidance.derive_cfg()["cfg"]
    ec, eu = _normal(18), _normal(19)
    w_t = _uniform(-1, 10, 20) if per_sample else torch.full((N,), 2.5, dtype=torch.float64)
    w_arg = w_t if per_sample else 2.5
    _close(G.cfg(ec, eu, w_arg), _f(expr, eps_c, eps_u, w)(ec, eu, w_t))


def test_classifier_guided_eps():
    expr = guidance.derive_classifier_guidance()["generic"]
    e_t, g_t, s_t, w_t = _normal(21), _normal(22), _uniform(1e-4, 1, 23), _uniform(-1, 10, 24)
    _close(G.classifier_guided_eps(e_t, g_t, s_t, w_t), _f(expr, eps, grad_log_cls, sigma, w)(e_t, g_t, s_t, w_t))


def test_implicit_classifier_grad():
    expr = guidance.derive_implicit_classifier()["grad"]
    ec, eu, s_t = _normal(25), _normal(26), _uniform(1e-4, 1, 27)
    _close(G.implicit_classifier_grad(ec, eu, s_t), _f(expr, eps_c, eps_u, sigma)(ec, eu, s_t))


def test_guidance_identities_hold_in_the_library():
    """Eq. 6 == Eq. 4 with the implicit classifier; strength w + 1 on eps_u == strength w on eps_c."""
    ec, eu, g_t, s_t, w_t = _normal(28), _normal(29), _normal(30), _uniform(1e-3, 1, 31), _uniform(-1, 8, 32)
    implicit = G.implicit_classifier_grad(ec, eu, s_t)
    _close(G.cfg(ec, eu, w_t), G.classifier_guided_eps(ec, implicit, s_t, w_t))
    eps_cond = eu - s_t * g_t  # Bayes, in eps units (derivations.guidance.derive_guidance_shift)
    _close(G.classifier_guided_eps(eu, g_t, s_t, w_t + 1), G.classifier_guided_eps(eps_cond, g_t, s_t, w_t))


def test_gaussian_class_error_matches_the_exact_eps_of_the_toy():
    """derivations.elbo: the derived E[eps | z] is the toy's exact eps, and its expected squared error the mean of
    (eps - eps*)^2 over many draws of eps at fixed x (the basis of the zero-shot classifier's ground-truth test)."""
    from minicfg import toy

    d = elbo.derive_gaussian_class_error()
    named = {str(s): s for s in d["expected_error"].free_symbols | d["eps_star"].free_symbols}
    mu_, s_ = 0.3, 0.6
    mixture = toy.GaussianMixture(torch.tensor([[mu_]], dtype=torch.float64),
                                  torch.tensor([[[s_**2]]], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    lam_t, z_t = _uniform(-12, 12, 40), _normal(41) * 1.5
    alpha_t, sigma_t = S.alpha_sigma(lam_t)
    star = d["eps_star"].subs({named[r"\mu"]: mu_, named["s"]: s_})
    exact = mixture.eps(z_t[:, None], lam_t, torch.zeros(N, dtype=torch.long))[:, 0]
    _close(_f(star, z, alpha, sigma)(z_t, alpha_t, sigma_t), exact)

    x_t = torch.tensor(0.9, dtype=torch.float64)
    expected = d["expected_error"].subs({named[r"\mu"]: mu_, named["s"]: s_, named["x"]: 0.9})
    noise = torch.randn(200_000, generator=torch.Generator().manual_seed(42), dtype=torch.float64)
    for lam_value in (-4.0, 0.0, 3.0):
        lam_b = torch.full((len(noise),), lam_value, dtype=torch.float64)
        a, s = S.alpha_sigma(lam_b)
        z_b = (a * x_t + s * noise)[:, None]
        mc = (noise - mixture.eps(z_b, lam_b, torch.zeros(len(noise), dtype=torch.long))[:, 0]).pow(2).mean()
        a0, s0 = (float(t) for t in S.alpha_sigma(torch.tensor(lam_value, dtype=torch.float64)))
        assert abs(float(mc) - float(expected.subs({alpha: a0, sigma: s0}))) < 0.01


def test_ties_detect_wrong_formulas():
    """The comparisons above are sharp: plausible slips (sign, exponent, swapped roles) are caught."""
    lo, hi = _lam_pairs(33)
    post_var = _f(posterior.derive_posterior()["var"], lam, lam_next)(lo, hi)
    rev_var = _f(posterior.derive_reverse_variance()["var"].subs(v, 0.3), lam, lam_next)(lo, hi)
    ec, eu = _normal(34), _normal(35)
    cfg = _f(guidance.derive_cfg()["cfg"], eps_c, eps_u, w)(ec, eu, torch.full((N,), 2.0, dtype=torch.float64))
    alpha, sigma_ = S.alpha_sigma(lo)
    _, sigma_next = S.alpha_sigma(hi)
    wrong = [
        (post_var, -torch.expm1(lo - hi) * sigma_**2),  # sigma_lam instead of sigma_lam'
        (post_var, -torch.expm1(hi - lo) * sigma_next**2),  # exponent sign flipped
        (rev_var, D.reverse_variance(lo, hi, 0.7)),  # v and 1 - v swapped
        (cfg, 3.0 * eu - 2.0 * ec),  # conditional and unconditional swapped
        (cfg, 2.0 * ec - 1.0 * eu),  # guidance_scale = w confusion
    ]
    for expected, bad in wrong:
        with pytest.raises(AssertionError):
            _close(bad, expected)
