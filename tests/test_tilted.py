"""What CFG samples (minicfg.tilted): the tilted density by quadrature, W1 against samples, and the samplers.

The references are written out here by hand: the Gaussian tilt's precision and mean, known Wasserstein-1 values,
the toy's own exact class draws, and the stationary variance of Langevin dynamics on a Gaussian.
"""

import math

import numpy as np
import pytest
import torch

from minicfg import toy
from minicfg.schedules import alpha_sigma, sampling_lams
from minicfg.tilted import (
    GridDensity,
    cfg_corrected,
    cfg_samples,
    langevin,
    mixture_1d,
    mixture_tilted,
    sample_set,
    score_at,
    tilted_figure,
    tilted_on_grid,
)

DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")

#: the toy of docs/what_cfg_samples.md: two unit-variance classes 3 apart, class 0 guided
MIX = mixture_1d((-1.5, 1.5), (1.0, 1.0))
N = 4000  # samples per set in the sampler tests
STEPS = 200


def _gauss_log(mean, std):
    return lambda x: -0.5 * ((x - mean) / std) ** 2 - math.log(std)


def _std_normal() -> GridDensity:
    """N(0, 1) on a fine grid (w = 0 returns the conditional density; the unconditional one is then unused)."""
    return tilted_on_grid(_gauss_log(0.0, 1.0), _gauss_log(0.0, 1.0), 0.0, np.linspace(-12, 12, 48001))


def _null(target: GridDensity, n: int, seed: int = 100) -> tuple[float, float]:
    return target.w1_null(n, repeats=12, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ the density


@pytest.mark.parametrize("w", [0.0, 0.5, 2.0, 4.0])
def test_gaussian_pair_tilt_is_the_closed_form_gaussian(w):
    # p_c = N(m1, s1^2), p_u = N(m0, s0^2): log p_c^(1+w) p_u^(-w) is quadratic in x with
    # precision P = (1+w)/s1^2 - w/s0^2 and mean ((1+w) m1/s1^2 - w m0/s0^2) / P (completing the square)
    m1, s1, m0, s0 = 1.0, 0.8, -0.5, 1.5
    prec = (1 + w) / s1**2 - w / s0**2
    mean = ((1 + w) * m1 / s1**2 - w * m0 / s0**2) / prec
    std = prec**-0.5
    d = tilted_on_grid(_gauss_log(m1, s1), _gauss_log(m0, s0), w, np.linspace(-15, 20, 70001))
    expected = np.exp(-0.5 * ((d.grid - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(d.density, expected, atol=1e-8)
    got_mean, got_std = d.mean_std()
    assert got_mean == pytest.approx(mean, abs=1e-7) and got_std == pytest.approx(std, abs=1e-7)
    # exact draws by the inverse CDF have these moments (within 4 standard errors)
    x = d.sample(40_000, torch.Generator().manual_seed(0))
    assert abs(x.mean() - mean) < 4 * std / 200 and abs(x.std() - std) < 4 * std / 280


def test_unnormalisable_tilt_is_refused():
    # a narrower p_u than p_c: P = (1+w)/1 - w/0.25 < 0 at w = 1, the tilt grows without bound
    with pytest.raises(ValueError, match="not decayed.*widen the grid"):
        tilted_on_grid(_gauss_log(0.0, 1.0), _gauss_log(0.0, 0.5), 1.0, np.linspace(-10, 10, 2001))


def test_mixture_tilt_against_its_formula():
    # p(x|0)^(1+w) p(x)^(-w) with p(x) = (N(x; -1.5, 1) + N(x; 1.5, 1)) / 2, normalised by a Riemann sum
    w = 3.0
    d = mixture_tilted(MIX, 0, w)
    x = d.grid
    p0, p1 = np.exp(-0.5 * (x + 1.5) ** 2), np.exp(-0.5 * (x - 1.5) ** 2)
    f = p0 ** (1 + w) * (0.5 * (p0 + p1)) ** (-w)
    np.testing.assert_allclose(d.density, f / (f.sum() * (x[1] - x[0])), atol=1e-9)
    assert d.cdf[0] == 0 and d.cdf[-1] == pytest.approx(1.0) and (np.diff(d.cdf) >= 0).all()


# ------------------------------------------------------------------ Wasserstein-1


@pytest.mark.parametrize("a", [0.0, 0.7, -1.3])
def test_w1_of_one_point_to_a_standard_normal(a):
    # W1(delta_a, N(0,1)) = E|X - a| = a (2 Phi(a) - 1) + 2 phi(a)
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    assert _std_normal().wasserstein1([a]) == pytest.approx(a * (2 * cdf - 1) + 2 * phi, abs=1e-6)


@pytest.mark.parametrize("n", [1, 4, 10])
def test_w1_of_midpoints_to_the_uniform(n):
    # the uniform on [0, 1] against the n points (i - 1/2)/n: each cell adds two triangles of area 1/(8 n^2)
    grid = np.linspace(0.0, 1.0, 1001)
    uniform = GridDensity(grid, np.ones_like(grid), grid.copy())
    assert uniform.wasserstein1((np.arange(n) + 0.5) / n) == pytest.approx(1 / (4 * n), rel=1e-9)


def test_w1_where_the_cdfs_cross_inside_a_grid_cell():
    # the uniform on [0, 1] on a coarse grid against {0.2, 0.8}: F - F_n changes sign at 0.5, inside a piece;
    # W1 = int_0^1 |F^-1(u) - F_n^-1(u)| du = 2 (int_0^0.5 |u - 0.2| du) = 0.13
    grid = np.array([0.0, 0.4, 1.0])
    assert GridDensity(grid, np.ones(3), grid.copy()).wasserstein1([0.2, 0.8]) == pytest.approx(0.13, rel=1e-12)


@pytest.mark.parametrize("shift", [0.3, -1.0])
def test_w1_of_a_shifted_normal_is_the_shift(shift):
    # W1(N(d, 1), N(0, 1)) = |d|; N(d, 1) represented by its 20,000 quantile midpoints
    u = (torch.arange(20_000, dtype=DT) + 0.5) / 20_000
    assert _std_normal().wasserstein1(torch.special.ndtri(u) + shift) == pytest.approx(abs(shift), abs=2e-3)


def test_exact_draws_sit_in_the_null_spread():
    # the toy's own class sampler (a different generator from the inverse CDF) against p(x|0)
    cond = mixture_tilted(MIX, 0, 0.0)
    n = 2000
    floor, spread = _null(cond, n)
    assert 0 < spread < floor  # W1 of a finite sample is never 0
    x, _ = MIX.sample(n, label=0, generator=torch.Generator().manual_seed(7))
    assert abs(cond.wasserstein1(x) - floor) < 3 * spread
    # and the floor shrinks like 1 / sqrt(n): four times the samples, half the floor (within 25%)
    assert _null(cond, 4 * n)[0] == pytest.approx(floor / 2, rel=0.25)


# ------------------------------------------------------------------ CFG's samplers against the tilt


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_cfg_at_w0_samples_the_class(sampler):
    cond = mixture_tilted(MIX, 0, 0.0)
    floor, spread = _null(cond, N)
    x = cfg_samples(MIX, 0, 0.0, N, sampling_lams(STEPS, dtype=DT), sampler, torch.Generator().manual_seed(1))
    assert cond.wasserstein1(x) < floor + 3 * spread


@pytest.fixture(scope="module")
def guided():
    """At w = 3: the tilted density, its null W1 at N, and DDIM's samples."""
    w = 3.0
    target = mixture_tilted(MIX, 0, w)
    x = cfg_samples(MIX, 0, w, N, sampling_lams(STEPS, dtype=DT), "ddim", torch.Generator().manual_seed(2))
    return w, target, _null(target, N), x


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_cfg_samplers_miss_the_tilted_density(guided, sampler):
    w, target, (floor, spread), x = guided
    if sampler == "ancestral":
        x = cfg_samples(MIX, 0, w, N, sampling_lams(STEPS, dtype=DT), sampler, torch.Generator().manual_seed(3))
    # far outside the Monte Carlo spread: more than 0.2 (the floor is about 0.02, its spread 0.005)
    assert target.wasserstein1(x) > floor + 0.2 + 10 * spread
    # and narrower than the tilt (Bradley & Nakkiran 2024: CFG's samplers sharpen beyond it)
    assert x.std() < target.mean_std()[1] - 0.02


def test_langevin_corrector_reaches_the_tilted_density(guided):
    w, target, (floor, spread), x = guided
    g = torch.Generator().manual_seed(4)
    corrected = cfg_corrected(MIX, 0, w, x, lam=20.0, step=0.01, n_steps=600, generator=g)
    assert target.wasserstein1(corrected) < floor + 3 * spread


def test_langevin_stationary_variance_on_a_gaussian():
    # x' = (1 - h/s^2) x + sqrt(2h) xi has stationary variance V = s^2 / (1 - h / (2 s^2))
    s2, h = 1.0, 0.1
    x = langevin(lambda t: -t / s2, torch.zeros(50_000, dtype=DT), h, 200, torch.Generator().manual_seed(5))
    assert float(x.var()) == pytest.approx(s2 / (1 - h / (2 * s2)), abs=0.025)
    assert abs(float(x.mean())) < 0.02


@pytest.mark.parametrize("lam", [-3.0, 0.0, 5.0, 20.0])
def test_score_at_is_the_gaussian_marginal_score(lam):
    # one class N(0.4, 0.7^2): p(z_lam) = N(alpha 0.4, alpha^2 0.49 + sigma^2), score -(z - alpha 0.4) / var
    one = mixture_1d([0.4], [0.7])
    z = torch.linspace(-3, 3, 13, dtype=DT)[:, None]
    a, s = (float(t) for t in alpha_sigma(torch.tensor(lam, dtype=DT)))
    expected = -(z - a * 0.4) / (a * a * 0.49 + s * s)
    torch.testing.assert_close(score_at(toy.eps_fn(one, 0), lam)(z), expected, rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------ bad input


def test_bad_input_is_refused_with_the_fix():
    two_d = toy.three_gaussians()
    lams = sampling_lams(10, dtype=DT)
    with pytest.raises(ValueError, match="1-D mixtures.*mixture_1d"):
        mixture_tilted(two_d, 0, 1.0)
    with pytest.raises(ValueError, match="1-D mixtures"):
        cfg_samples(two_d, 0, 1.0, 10, lams)
    with pytest.raises(ValueError, match="outside \\[-1"):
        mixture_tilted(MIX, 0, -1.5)
    with pytest.raises(ValueError, match="outside \\[-1"):
        cfg_samples(MIX, 0, -2.0, 10, lams)
    with pytest.raises(ValueError, match="label must be one class"):
        mixture_tilted(MIX, 2, 1.0)
    with pytest.raises(ValueError, match="unknown sampler"):
        cfg_samples(MIX, 0, 1.0, 10, lams, "nope")
    with pytest.raises(ValueError, match="increasing"):
        tilted_on_grid(_gauss_log(0, 1), _gauss_log(0, 1), 0.0, np.linspace(1, -1, 11))
    with pytest.raises(ValueError, match="outside the grid.*wider grid"):
        mixture_tilted(MIX, 0, 1.0, extent=8.0).wasserstein1([20.0])
    with pytest.raises(ValueError, match="NaN"):
        _std_normal().wasserstein1([0.0, float("nan")])
    with pytest.raises(ValueError, match="one std per mean"):
        mixture_1d([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        mixture_1d([0.0], [0.0])
    with pytest.raises(ValueError, match="step must be positive"):
        langevin(lambda t: -t, torch.zeros(3), 0.0, 5)
    with pytest.raises(ValueError, match="finite"):
        score_at(toy.eps_fn(MIX), float("inf"))
    with pytest.raises(ValueError, match="repeats"):
        _std_normal().w1_null(10, repeats=1)


# ------------------------------------------------------------------ the figure


def test_figure_legend_is_off_the_data_and_inside_the_figure():
    target, cond = mixture_tilted(MIX, 0, 3.0), mixture_tilted(MIX, 0, 0.0)
    x = target.sample(500, torch.Generator().manual_seed(0))
    fig = tilted_figure(target, cond, {"exact": x, "shifted": x - 1.0}, {"exact": (0.01, 0.002)}, w=3.0,
                        floor=(0.011, 0.002))
    fig.canvas.draw()
    ax = fig.axes[0]
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    width, height = fig.canvas.get_width_height()
    assert legend.x0 >= frame.x1, "the legend overlaps the axes"
    assert legend.x1 <= width and legend.y0 >= 0 and legend.y1 <= height, "the legend leaves the figure"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["exact: W1 = 0.010 ± 0.002", "shifted"]
    lo, hi = ax.get_xlim()  # the shifted histogram's lower tail and p(x|c)'s upper tail are both in view
    assert lo <= float(np.quantile(x - 1.0, 0.001)) and hi >= -1.5 + 3.0
    assert "w = 3" in ax.get_title() and "0.011 ± 0.002" in ax.get_title()


def test_sample_set_is_the_sampler_then_the_corrector_on_one_seeded_generator():
    mix = mixture_1d((-1.5, 1.5), (1.0, 1.0))
    lams = sampling_lams(10, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)  # the two steps written out, drawing from one generator in turn
    by_hand = cfg_corrected(mix, 0, 1.0, cfg_samples(mix, 0, 1.0, 200, lams, "ddim", generator=g), float(lams[-1]),
                            0.01, 50, g)
    torch.testing.assert_close(sample_set(mix, 0, 1.0, 200, lams, "ddim", seed=4, langevin=(0.01, 50)), by_hand,
                               rtol=0, atol=0)
    plain = cfg_samples(mix, 0, 1.0, 200, lams, "ddim", generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(sample_set(mix, 0, 1.0, 200, lams, "ddim", seed=4), plain, rtol=0, atol=0)
