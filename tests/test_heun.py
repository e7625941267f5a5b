"""Heun's second-order sampler (samplers.heun) on the exact-score toy: one step against the formula written out by
hand, its order of convergence against DDIM's, its cost in network evaluations, and the command line."""

import math

import numpy as np
import pytest
import torch

from minicfg import cli, samplers, toy

DT = torch.float64
MIX = toy.GaussianMixture(  # tests/test_samplers.py's TARGET: three well-separated 2-D Gaussians
    means=torch.tensor([[-3.0, -1.0], [3.0, -1.0], [0.0, 3.0]], dtype=DT),
    covs=torch.tensor([[[0.36, 0.12], [0.12, 0.25]], [[0.16, 0.0], [0.0, 0.40]], [[0.30, -0.08], [-0.08, 0.20]]],
                      dtype=DT),
    weights=torch.tensor([0.5, 0.3, 0.2], dtype=DT),
)
EPS = toy.eps_fn(MIX)  # the exact unconditional eps

pytestmark = pytest.mark.usefixtures("one_thread")


def _z0(n: int = 200) -> torch.Tensor:
    return torch.randn(n, 2, dtype=DT, generator=torch.Generator().manual_seed(0))


def _x_pred(z, lam: float):
    lam_t = torch.tensor(lam, dtype=DT)
    alpha, sigma = torch.sigmoid(lam_t).sqrt(), torch.sigmoid(-lam_t).sqrt()
    return (z - sigma * EPS(z, lam_t.expand(z.shape[0]))) / alpha


def test_one_heun_step_is_the_trapezoid_of_the_x_predictions():
    """In s = lam / 2 the flow is d(z / sigma)/ds = e^s x~. Heun: the Euler (DDIM) step to lam' as predictor,
    then the step again with the mean of x~ at both ends, e^s integrated exactly:
    z' = (sigma' / sigma) z + alpha' (1 - e^-h) (x~(z, lam) + x~(z^, lam')) / 2, h = (lam' - lam) / 2.
    A grid of three lams is one such step and the x-prediction at lam'."""
    z = _z0(8)
    lam0, lam1 = -3.0, 1.0
    sigma0 = math.sqrt(1 / (1 + math.exp(lam0)))
    alpha1, sigma1 = math.sqrt(1 / (1 + math.exp(-lam1))), math.sqrt(1 / (1 + math.exp(lam1)))
    h = (lam1 - lam0) / 2
    x0 = _x_pred(z, lam0)
    z_euler = (sigma1 / sigma0) * z + alpha1 * (1 - math.exp(-h)) * x0
    z1 = (sigma1 / sigma0) * z + alpha1 * (1 - math.exp(-h)) * (x0 + _x_pred(z_euler, lam1)) / 2
    out = samplers.heun(EPS, z, torch.tensor([lam0, lam1, 5.0], dtype=DT))
    torch.testing.assert_close(out, _x_pred(z1, lam1), rtol=1e-12, atol=1e-12)
    # its predictor is DDIM's step: same first step, different result
    assert not torch.allclose(out, samplers.ddim(EPS, z, torch.tensor([lam0, lam1, 5.0], dtype=DT)), atol=1e-3)


def _solve(name: str, n_steps: int, z: torch.Tensor) -> torch.Tensor:
    """x~ at lam = 6 after n_steps equal steps from lam = -6 (a last lam beyond 6 makes 6 the last evaluated)."""
    lams = torch.cat([torch.linspace(-6.0, 6.0, n_steps + 1, dtype=DT), torch.tensor([7.0], dtype=DT)])
    return samplers.run_sampler(name, EPS, z, lams)


def test_heun_converges_as_steps_to_the_minus_two_and_ddim_as_steps_to_the_minus_one():
    """Mean error of x~ at lam = 6 against a 2,048-step DPM-Solver++(2M) solution of the same flow (another solver,
    so the reference is not heun's own). Measured (this grid, 200 starts): heun's error falls by 2^1.75, 2^2.09,
    2^2.25, 2^2.0 per doubling from 16 to 256 steps, DDIM's by 2^0.84 to 2^1.06."""
    z = _z0()
    reference = _solve("dpmpp_2m", 2048, z)
    ns = (32, 64, 128)
    err = {name: [float((_solve(name, n, z) - reference).norm(dim=1).mean()) for n in ns] for name in ("heun", "ddim")}
    order = {name: [math.log2(e[i] / e[i + 1]) for i in range(len(ns) - 1)] for name, e in err.items()}
    assert all(1.7 < p < 2.6 for p in order["heun"]), (err, order)
    assert all(0.5 < p < 1.3 for p in order["ddim"]), (err, order)
    assert all(h < d / 5 for h, d in zip(err["heun"], err["ddim"], strict=True)), err


def test_heun_evaluates_twice_per_step_and_once_at_the_last_lam():
    seen = []

    def counting(z, lam):
        seen.append(float(lam[0]))
        return EPS(z, lam)

    lams = torch.tensor([-4.0, -1.0, 2.0, 5.0], dtype=DT)
    samplers.heun(counting, _z0(4), lams)
    # grid lam, predictor at the next grid lam, ...; the last evaluated lam (2.0) only predicts
    assert seen == [-4.0, -1.0, -1.0, 2.0, 2.0]
    assert samplers.network_evaluations("heun", 3) == len(seen) == 5
    assert samplers.network_evaluations("ddim", 3) == 3


def test_minicfg_sample_runs_heun(tmp_path, monkeypatch):
    """`minicfg sample --sampler heun` reaches the sampler with the shipped model, 2 n - 1 evaluations a batch."""
    calls = []

    def spy(eps_fn, z, lams, **kw):
        def counted(z, lam):
            calls.append(float(lam[0]))
            return eps_fn(z, lam)

        return samplers.heun(counted, z, lams, **kw)

    monkeypatch.setitem(samplers.SAMPLERS, "heun", spy)
    out = tmp_path / "h.npz"
    assert cli.main(["sample", "--sampler", "heun", "--w", "1", "--n-per-class", "1", "--n-steps", "4",
                     "--out", str(out), "--no-progress"]) == 0
    assert len(calls) == 2 * 3 + 1
    images = np.load(out)["images"]
    assert images.shape == (10, 1, 28, 28) and images.std() > 30 and np.median(images) < 40
