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
    # p(c | z) is a distribution over classes
    torch.testing.assert_close(mix.classifier_log_prob(z, lam).logsumexp(1), torch.zeros(12, dtype=DT))


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


def test_data_level_and_diffused(mix):
    z = _points()
    # lam = +inf and lam = None are the data density; a diffused mixture is the marginal at lam
    torch.testing.assert_close(mix.log_prob(z, float("inf")), mix.log_prob(z))
    for lam in (-3.0, 4.0):
        torch.testing.assert_close(mix.diffused(lam).log_prob(z), mix.log_prob(z, lam), rtol=0, atol=ATOL)
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


def test_noise_scaled_ancestral(mix):
    labels = torch.arange(200) % 3
    z = torch.randn(200, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    lams = sampling_lams(30, dtype=DT)
    fn = toy.eps_fn(mix, labels)
    ref = ancestral(fn, z, lams, generator=torch.Generator().manual_seed(5))
    same = ancestral(fn, z, lams, noise_scale=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(same, ref, rtol=0, atol=0)
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


def test_recorded_and_tilted_grid(mix):
    fn, trace = toy.recorded(toy.eps_fn(mix))
    z = torch.randn(10, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    lams = sampling_lams(5, dtype=DT)
    ddim(fn, z, lams)
    assert trace["lam"] == pytest.approx(lams[:-1].tolist())
    assert torch.equal(trace["z"][0], z) and len(trace["eps"]) == 5
    coords, dens = mix.tilted_grid(0, 2.0, lam=1.0, n_grid=101)
    assert dens.shape == (101, 101)
    assert abs(float(dens.sum() * (coords[1] - coords[0]) ** 2) - 1.0) < 1e-12


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
