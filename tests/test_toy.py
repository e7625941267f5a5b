"""The exact Gaussian-mixture toy: closed forms against autograd, guidance identities, exact sampling.

Everything runs in float64, where the closed forms agree with autograd to round-off (tolerance 1e-10).
"""

import math

import pytest
import torch

from minicfg import toy
from minicfg.guidance import implicit_classifier_grad
from minicfg.samplers import ancestral, ddim
from minicfg.schedules import alpha_sigma, sampling_lams

DT = torch.float64
LAMS = [-10.0, -5.0, -2.0, -0.5, 0.0, 0.5, 2.0, 5.0, 10.0]
ATOL = 1e-10


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mix():
    """Three unequal, correlated classes: every term of the closed forms is exercised."""
    means = torch.tensor([[0.0, 2.0], [-1.7, -1.0], [1.7, -1.0]], dtype=DT)
    covs = torch.tensor([[[1.0, 0.3], [0.3, 0.6]], [[0.5, -0.2], [-0.2, 0.9]], [[0.8, 0.0], [0.0, 0.4]]], dtype=DT)
    return toy.GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2], dtype=DT))


def _points(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 2.5 * torch.randn(n, 2, dtype=DT, generator=g)


def _sigma(lam, z):
    return alpha_sigma(torch.as_tensor(lam, dtype=DT).expand(z.shape[0]))[1][:, None]


def _autograd(fn, z):
    z = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(z).sum(), z)
    return grad


def _gauss_logpdf(pts, mean, cov):
    """log N(pts; mean, cov) for 2-D points (N, 2), written out with the 2x2 inverse and determinant."""
    (a, b), (c, d) = cov.tolist()
    det = a * d - b * c
    dx, dy = (pts - mean).unbind(1)
    maha = (d * dx**2 - (b + c) * dx * dy + a * dy**2) / det
    return -0.5 * maha - 0.5 * math.log(det) - math.log(2 * math.pi)


def _class_log_marginals(mix, pts, lam):
    """log p(z_lam | k) for every class (N, K): N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I), alpha^2 = sigmoid(lam)."""
    a2, s2 = 1 / (1 + math.exp(-lam)), 1 / (1 + math.exp(lam))
    eye = torch.eye(2, dtype=DT)
    moments = zip(mix.means, mix.covs, strict=True)
    return torch.stack([_gauss_logpdf(pts, a2**0.5 * m, a2 * c + s2 * eye) for m, c in moments], 1)


LABEL_CASES = {
    "uncond": None,
    "one int": 1,
    "per-sample with null": torch.tensor([0, 1, 2, 3] * 3),
}


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_eps_is_minus_sigma_times_autograd_score(mix, lam, case):
    label = LABEL_CASES[case]
    z = _points()
    grad = _autograd(lambda t: mix.log_prob(t, lam, label), z)
    torch.testing.assert_close(mix.eps(z, lam, label), -_sigma(lam, z) * grad, rtol=0, atol=ATOL)
    torch.testing.assert_close(mix.score(z, lam, label), grad, rtol=0, atol=ATOL)


def test_per_sample_lam(mix):
    z = _points(n=9)
    lam = torch.linspace(-10, 10, 9, dtype=DT)
    grad = _autograd(lambda t: mix.log_prob(t, lam), z)
    torch.testing.assert_close(mix.eps(z, lam), -alpha_sigma(lam)[1][:, None] * grad, rtol=0, atol=ATOL)
    for i in range(9):  # each row equals the same point evaluated alone at its own lam
        torch.testing.assert_close(mix.eps(z[i : i + 1], lam[i]), mix.eps(z, lam)[i : i + 1], rtol=0, atol=ATOL)


@pytest.mark.parametrize("lam", LAMS)
def test_classifier_grad_matches_autograd(mix, lam):
    z = _points()
    labels = torch.tensor([0, 1, 2] * 4)
    grad = _autograd(lambda t: mix.classifier_log_prob(t, lam).gather(1, labels[:, None]), z)
    torch.testing.assert_close(mix.classifier_grad(z, lam, labels), grad, rtol=0, atol=ATOL)
    # Bayes' rule by hand: p(c | z_lam) = pi_c p(z_lam | c) / sum_k pi_k p(z_lam | k)
    joint = mix.weights * _class_log_marginals(mix, z, lam).exp()
    torch.testing.assert_close(mix.classifier_log_prob(z, lam).exp(), joint / joint.sum(1, keepdim=True),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lam", LAMS)
def test_implicit_classifier_grad_equals_true_classifier_grad(mix, lam):
    """Paper Sec. 3.2: with exact scores, -(eps(z,c) - eps(z)) / sigma is grad log p(c | z)."""
    z = _points()
    labels = torch.tensor([2, 0, 1] * 4)
    implicit = implicit_classifier_grad(mix.eps(z, lam, labels), mix.eps(z, lam), _sigma(lam, z))
    torch.testing.assert_close(implicit, mix.classifier_grad(z, lam, labels), rtol=1e-9, atol=ATOL)


@pytest.mark.parametrize("w", [0.5, 1.0, 4.0])
def test_cfg_equals_classifier_guidance_step_by_step(mix, w):
    """CFG (Eq. 6) with exact eps is classifier guidance (Eq. 4) with the true classifier, at every step."""
    n = 300
    labels = torch.arange(n) % 3
    cfg_fn = toy.cfg_eps_fn(mix, labels, w)
    cls_cond = toy.classifier_eps_fn(mix, labels, w, base="cond")
    cls_uncond = toy.classifier_eps_fn(mix, labels, w + 1, base="uncond")
    lams_seen = []

    def checking(z, lam):
        eps = cfg_fn(z, lam)
        torch.testing.assert_close(cls_cond(z, lam), eps, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(cls_uncond(z, lam), eps, rtol=1e-9, atol=1e-10)
        lams_seen.append(float(lam[0]))
        return eps

    lams = sampling_lams(40, dtype=DT)
    z = torch.randn(n, 2, dtype=DT, generator=torch.Generator().manual_seed(1))
    x_checked = ancestral(checking, z, lams, generator=torch.Generator().manual_seed(2))
    assert len(lams_seen) == 40
    x_cls = ancestral(cls_cond, z, lams, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(x_cls, x_checked, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("lam", [-5.0, 0.0, 5.0])
def test_guided_eps_is_score_of_tilted_density_at_each_lam(mix, w, lam):
    """eps~ = -sigma grad [log p(z_lam|c) + w log p(c|z_lam)]: guidance tilts each noise level."""
    z = _points()
    labels = torch.tensor([0, 1, 2] * 4)
    grad = _autograd(lambda t: mix.tilted_log_density(t, labels, w, lam=lam), z)
    eps = toy.cfg_eps_fn(mix, labels, w)(z, torch.full((12,), lam, dtype=DT))
    torch.testing.assert_close(eps, -_sigma(lam, z) * grad, rtol=0, atol=ATOL)


@pytest.mark.parametrize("lam", [-3.0, 4.0])
def test_marginal_is_the_data_density_convolved_with_the_noise(mix, lam):
    """p(z_lam) = integral p(x) N(z_lam; alpha x, sigma^2 I) dx (paper Eq. 1), by quadrature on a grid of x.

    The reference uses neither the closed form of the marginal nor the library: the data density is
    written out by hand and the noise kernel integrated numerically (grid step 0.025, many points per
    standard deviation of the narrowest integrand, so the sum is exact to round-off).
    """
    z = _points()
    alpha, sigma = 1 / (1 + math.exp(-lam)) ** 0.5, 1 / (1 + math.exp(lam)) ** 0.5
    g = torch.arange(-10.0, 10.0 + 1e-9, 0.025, dtype=DT)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    x = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    cell = float(g[1] - g[0]) ** 2
    data = torch.stack([_gauss_logpdf(x, m, c).exp() for m, c in zip(mix.means, mix.covs, strict=True)])  # (K, M)
    kernel = torch.exp(-torch.cdist(z, alpha * x) ** 2 / (2 * sigma**2)) / (2 * math.pi * sigma**2)  # (B, M)
    per_class = (kernel @ data.T) * cell  # p(z_lam | k), (B, K)
    expected = torch.log(per_class @ mix.weights)
    torch.testing.assert_close(mix.log_prob(z, lam), expected, rtol=0, atol=1e-8)
    torch.testing.assert_close(mix.diffused(lam).log_prob(z), expected, rtol=0, atol=1e-8)
    labels = torch.tensor([0, 1, 2] * 4)
    torch.testing.assert_close(mix.log_prob(z, lam, labels), torch.log(per_class[torch.arange(12), labels]),
                               rtol=0, atol=1e-8)


def test_data_level_and_diffused(mix):
    z = _points()
    # lam = +inf and lam = None are the data density
    torch.testing.assert_close(mix.log_prob(z, float("inf")), mix.log_prob(z))
    # the data density integrates to 1 (grid quadrature)
    g = torch.linspace(-9, 9, 361, dtype=DT)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    mass = mix.log_prob(pts).exp().sum() * (g[1] - g[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-6
    # tilted density with w = 0 is the class density: moments are the class's
    mean, cov = mix.tilted_moments(1, 0.0)
    torch.testing.assert_close(mean, mix.means[1], rtol=0, atol=1e-8)
    torch.testing.assert_close(cov, mix.covs[1], rtol=0, atol=1e-8)


def test_float32_close_to_float64(mix):
    z = _points()
    mix32 = toy.GaussianMixture(mix.means.float(), mix.covs.float(), mix.weights.float())
    for lam in (-20.0, 0.0, 20.0):
        eps32 = mix32.eps(z.float(), lam)
        assert eps32.dtype == torch.float32
        torch.testing.assert_close(eps32.double(), mix.eps(z, lam), rtol=1e-4, atol=1e-5)


def test_data_sampling_moments(mix):
    x, labels = mix.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20_000, 2) and labels.shape == (20_000,) and x.dtype == DT
    se_mean = float(mix.cov().diagonal().max() / 20_000) ** 0.5
    torch.testing.assert_close(x.mean(0), mix.mean(), rtol=0, atol=5 * se_mean)
    freq = torch.bincount(labels, minlength=3).to(DT) / 20_000
    torch.testing.assert_close(freq, mix.weights, rtol=0, atol=5 * (0.25 / 20_000) ** 0.5)
    x2, l2 = mix.sample(5, label=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(l2, torch.full((5,), 2))
    x3, _ = mix.sample(5, label=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x2, x3)


def _check_gaussian(x, mean, cov, what, n_se=5.0):
    """Sample mean and covariance within ``n_se`` standard errors of a Gaussian's."""
    n = x.shape[0]
    var = cov.diagonal()
    se_mean = (var / n).sqrt()
    se_cov = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()  # Var of a sample covariance entry
    z_mean = ((x.mean(0) - mean) / se_mean).abs().max()
    z_cov = ((torch.cov(x.T) - cov) / se_cov).abs().max()
    assert z_mean < n_se, f"{what}: mean {x.mean(0).tolist()} vs {mean.tolist()} ({float(z_mean):.1f} SE)"
    assert z_cov < n_se, f"{what}: cov {torch.cov(x.T).tolist()} vs {cov.tolist()} ({float(z_cov):.1f} SE)"


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_conditional_sampling_reproduces_each_class(mix, sampler):
    """With w = 0 and exact scores both samplers draw each class's Gaussian: 10,000 samples, 5 SE."""
    n = 10_000
    labels = torch.arange(n) % 3
    g = torch.Generator().manual_seed(3)
    z = torch.randn(n, 2, dtype=DT, generator=g)
    lams = sampling_lams(200, dtype=DT)
    if sampler == "ancestral":
        x = ancestral(toy.cfg_eps_fn(mix, labels, 0.0), z, lams, generator=g)
    else:
        x = ddim(toy.eps_fn(mix, labels), z, lams)
    for k in range(3):
        _check_gaussian(x[labels == k], mix.means[k], mix.covs[k], f"{sampler} class {k}")


@pytest.mark.parametrize("v", [0.3, 0.8])
@pytest.mark.parametrize("noise_scale", [1.0, 0.5])
def test_noise_scaled_ancestral_step_by_hand(mix, noise_scale, v):
    """Two model calls and one noise step of Alg. 2, written out: the fresh noise is scaled by noise_scale.

    x~ = (z - sigma eps) / alpha; z' = e^(lam - lam') (alpha' / alpha) z + (1 - e^(lam - lam')) alpha' x~
    + noise_scale * std * noise, with std^2 = ((1 - e^(lam - lam')) sigma'^2)^(1 - v) ((1 - e^(lam - lam'))
    sigma^2)^v; the result is the x-prediction at lam'. The default, noise_scale = 1, is the paper's sampler.
    """
    labels = torch.arange(20) % 3
    z = torch.randn(20, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    lam, lam_next, lam_last = -1.5, 2.0, 6.0
    fn = toy.eps_fn(mix, labels)

    def scales(t):
        return 1 / (1 + math.exp(-t)) ** 0.5, 1 / (1 + math.exp(t)) ** 0.5

    (a, s), (a1, s1) = scales(lam), scales(lam_next)
    x_hat = (z - s * fn(z, torch.full((20,), lam, dtype=DT))) / a
    shrink = 1 - math.exp(lam - lam_next)
    mean = math.exp(lam - lam_next) * (a1 / a) * z + shrink * a1 * x_hat
    std = ((shrink * s1**2) ** (1 - v) * (shrink * s**2) ** v) ** 0.5
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(5), dtype=DT)
    z1 = mean + noise_scale * std * noise
    expected = (z1 - s1 * fn(z1, torch.full((20,), lam_next, dtype=DT))) / a1

    lams = torch.tensor([lam, lam_next, lam_last], dtype=DT)
    kwargs = {} if noise_scale == 1.0 else {"noise_scale": noise_scale}
    got = ancestral(fn, z, lams, v=v, generator=torch.Generator().manual_seed(5), **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_noise_scaled_ancestral(mix):
    labels = torch.arange(200) % 3
    z = torch.randn(200, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    lams = sampling_lams(30, dtype=DT)
    fn = toy.eps_fn(mix, labels)
    # no noise and exact scores: every sample lands on its class mean
    cold = ancestral(fn, z, lams, noise_scale=0.0)
    torch.testing.assert_close(cold, mix.means[labels], rtol=0, atol=1e-3)


def test_class_stats_on_data(mix):
    x, labels = mix.sample(6000, generator=torch.Generator().manual_seed(0))
    s = toy.class_stats(mix, x, labels)
    assert set(s) == {"spread", "shift", "dist", "own_nearest", "p_class"}
    expected_spread = torch.diagonal(mix.covs, dim1=-2, dim2=-1).sum(-1).sqrt()
    torch.testing.assert_close(s["spread"], expected_spread, rtol=0.05, atol=0)
    assert float(s["shift"].max()) < 0.1
    assert bool(((s["own_nearest"] > 0.5) & (s["own_nearest"] <= 1)).all())


def test_three_gaussians_defaults():
    m = toy.three_gaussians()
    assert m.num_classes == 3 and m.dim == 2 and m.means.dtype == DT
    torch.testing.assert_close(m.means.norm(dim=1), torch.full((3,), 2.0, dtype=DT))
    torch.testing.assert_close(m.weights.sum(), torch.tensor(1.0, dtype=DT))
    # neighbouring means are radius * sqrt(3) apart
    assert math.isclose(float((m.means[0] - m.means[1]).norm()), 2.0 * math.sqrt(3), rel_tol=1e-12)


def test_validation(mix):
    with pytest.raises(ValueError, match="weights"):
        toy.GaussianMixture(mix.means, mix.covs, torch.tensor([0.5, 0.5, 0.5], dtype=DT))
    with pytest.raises(ValueError, match="covs"):
        toy.GaussianMixture(mix.means, mix.covs[:2], mix.weights)
    with pytest.raises(ValueError, match="positive definite"):
        toy.GaussianMixture(mix.means, -mix.covs, mix.weights)
    z = _points()
    with pytest.raises(ValueError, match="shape"):
        mix.eps(z[:, :1], 0.0)
    with pytest.raises(ValueError, match="labels"):
        mix.eps(z, 0.0, torch.tensor([4] * 12))
    with pytest.raises(ValueError, match="labels"):
        mix.classifier_grad(z, 0.0, torch.tensor([3] * 12))  # the null label is no class
    with pytest.raises(ValueError, match="lam"):
        mix.eps(z, torch.zeros(5, dtype=DT))
    with pytest.raises(ValueError, match="base"):
        toy.classifier_eps_fn(mix, torch.zeros(12, dtype=torch.long), 1.0, base="both")
    with pytest.raises(ValueError, match="guidance strength"):
        toy.cfg_eps_fn(mix, torch.zeros(12, dtype=torch.long), -2.0)


def test_component_moments_recover_the_mixture(mix):
    """Responsibility-weighted averages of exact samples estimate weights, means and covariances."""
    x, _ = mix.sample(40_000, generator=torch.Generator().manual_seed(4))
    weights, means, covs = mix.component_moments(x)
    torch.testing.assert_close(weights, mix.weights, rtol=0, atol=0.01)
    torch.testing.assert_close(means, mix.means, rtol=0, atol=0.05)
    torch.testing.assert_close(covs, mix.covs, rtol=0, atol=0.06)


@pytest.mark.parametrize("label", [0, 1])
def test_tilted_grid_against_closed_forms_and_quadrature(mix, label):
    """tilted_grid's density[i, j] at (x, y) = (coords[j], coords[i]) against references computed by hand.

    w = 0: the class marginal N(alpha mu_c, alpha^2 Sigma_c + sigma^2 I); w = -1: p(z|c) / p(c|z) = p(z) / pi_c,
    the whole mixture. w = 2: p(z|c) p(c|z)^2 written out with Bayes' rule and normalised by a separate
    quadrature over a larger and finer grid.
    """
    lam = 1.0

    def on_grid(coords):
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)

    def tilted_unnormalised(pts, w):
        log_joint = torch.log(mix.weights) + _class_log_marginals(mix, pts, lam)
        log_cls = log_joint[:, label] - torch.log(log_joint.exp().sum(1))
        return torch.exp(log_joint[:, label] - math.log(mix.weights[label]) + w * log_cls)

    for w in (0.0, -1.0):
        coords, dens = mix.tilted_grid(label, w, lam=lam, n_grid=101)
        assert dens.shape == (101, 101)
        pts = on_grid(coords)
        if w == 0.0:
            expected = _class_log_marginals(mix, pts, lam)[:, label].exp()
        else:
            expected = _class_log_marginals(mix, pts, lam).exp() @ mix.weights
        torch.testing.assert_close(dens, expected.reshape(101, 101), rtol=1e-8, atol=1e-12)

    coords, dens = mix.tilted_grid(label, 2.0, lam=lam, n_grid=101)
    fine = torch.linspace(-1.5 * float(coords[-1]), 1.5 * float(coords[-1]), 1201, dtype=DT)
    norm = tilted_unnormalised(on_grid(fine), 2.0).sum() * (fine[1] - fine[0]) ** 2
    expected = tilted_unnormalised(on_grid(coords), 2.0) / norm
    torch.testing.assert_close(dens, expected.reshape(101, 101), rtol=1e-8, atol=1e-12)


def test_library_classifier_eps_fn_with_exact_classifier(mix):
    """guidance.classifier_eps_fn (autograd through a classifier) on the toy's exact classifier and eps."""
    from minicfg import guidance

    z = _points()
    labels = torch.tensor([0, 1, 2] * 4)
    lam = torch.full((12,), 0.5, dtype=DT)
    classifier = lambda t, lam_: mix.classifier_log_prob(t, lam_)  # log-probabilities are valid logits
    lib = guidance.classifier_eps_fn(toy.eps_fn(mix, labels), classifier, labels, 2.0)
    # the library casts logits to float32 before log_softmax: agreement to float32 precision
    torch.testing.assert_close(
        lib(z, lam), toy.classifier_eps_fn(mix, labels, 2.0, base="cond")(z, lam), rtol=1e-5, atol=1e-6
    )
