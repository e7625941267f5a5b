"""Unit tests of the log-SNR math core: schedules, forward process, posterior, guidance, loss."""

import math

import pytest
import torch

from minicfg import diffusion, guidance, schedules

torch.set_default_dtype(torch.float32)


def test_alpha_sigma_stable_and_variance_preserving_in_float32():
    lam = torch.linspace(-30, 30, 601, dtype=torch.float32)
    alpha, sigma = schedules.alpha_sigma(lam)
    assert alpha.dtype == torch.float32
    assert torch.isfinite(alpha).all() and torch.isfinite(sigma).all()
    assert (alpha > 0).all() and (sigma > 0).all()  # no underflow to 0 at |lam| = 30
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(lam))
    # log-SNR recovered, even at the ends where 1 - sigmoid would round to 0
    torch.testing.assert_close(torch.log(alpha**2) - torch.log(sigma**2), lam, atol=1e-4, rtol=1e-5)


def test_cosine_schedule_endpoints_monotone_and_bad_range():
    u = torch.linspace(0, 1, 1001)
    lam = schedules.log_snr_cosine(u, -20.0, 20.0)
    assert lam[0].item() == pytest.approx(20.0, abs=1e-3)
    assert lam[-1].item() == pytest.approx(-20.0, abs=1e-3)
    assert (lam[1:] < lam[:-1]).all()
    with pytest.raises(ValueError, match="lam_min must be smaller"):
        schedules.log_snr_cosine(u, 5.0, 5.0)
    with pytest.raises(ValueError, match="finite"):
        schedules.log_snr_uniform(u, -math.inf, 1.0)


def test_sampling_lams_grid():
    for schedule in ("cosine", "uniform"):
        lams = schedules.sampling_lams(8, -10.0, 12.0, schedule=schedule)
        assert lams.shape == (9,)
        assert lams[0].item() == pytest.approx(-10.0, abs=1e-4) and lams[-1].item() == pytest.approx(12.0, abs=1e-4)
        assert (lams[1:] > lams[:-1]).all()
    with pytest.raises(ValueError, match="n_steps"):
        schedules.sampling_lams(0)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.sampling_lams(4, schedule="linear")


def test_ddpm_log_snr_matches_alpha_bar():
    lam = schedules.ddpm_log_snr(1000, dtype=torch.float64)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    torch.testing.assert_close(torch.sigmoid(lam), alpha_bar)
    assert (lam[1:] < lam[:-1]).all()


def test_q_sample_broadcasts_any_batch_shape():
    x = torch.randn(4, 2, 3, 5)
    eps = torch.randn_like(x)
    lam = torch.tensor([-3.0, 0.0, 2.0, 10.0])
    z = diffusion.q_sample(x, lam, eps)
    a, s = schedules.alpha_sigma(lam)
    torch.testing.assert_close(z[2], a[2] * x[2] + s[2] * eps[2])
    with pytest.raises(ValueError, match="does not match"):
        diffusion.q_sample(x, torch.zeros(3), eps)
    with pytest.raises(ValueError, match="shapes must match"):
        diffusion.q_sample(x, lam, eps[:, :1])


def test_transition_composes_to_the_marginal():
    """Sampling z_lam' | x and then z_lam | z_lam' gives the moments of q(z_lam | x) (paper Eq. 1-2)."""
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x = torch.full((n, 1), 0.7, dtype=torch.float64)
    lam_src, lam = 2.0, -1.0
    z_src = diffusion.q_sample(x, lam_src, torch.randn(n, 1, generator=g, dtype=torch.float64))
    mean, var = diffusion.q_transition(z_src, lam, lam_src)
    z = mean + var.sqrt() * torch.randn(n, 1, generator=g, dtype=torch.float64)
    alpha, sigma = schedules.alpha_sigma(torch.tensor(lam, dtype=torch.float64))
    assert z.mean().item() == pytest.approx((alpha * 0.7).item(), abs=4 * sigma.item() / math.sqrt(n))
    assert z.var().item() == pytest.approx((sigma**2).item(), rel=0.02)
    with pytest.raises(ValueError, match="lam < lam_src"):
        diffusion.q_transition(z_src, 3.0, lam_src)


def test_posterior_endpoints_and_errors():
    z, x = torch.randn(3, 4), torch.randn(3, 4)
    # lam' -> lam: the posterior collapses onto z_lam rescaled to lam' (no information gained)
    mean, var = diffusion.posterior(z, x, torch.full((3,), 1.0), torch.full((3,), 1.0 + 1e-6))
    torch.testing.assert_close(mean, z, atol=1e-4, rtol=1e-4)
    assert var.max().item() < 1e-5
    with pytest.raises(ValueError, match="lam < lam_next"):
        diffusion.posterior(z, x, 2.0, 1.0)
    with pytest.raises(ValueError, match="shapes must match"):
        diffusion.posterior(z, x[:, :2], 0.0, 1.0)


def test_reverse_variance_interpolates_between_its_ends():
    lam, lam_next = torch.tensor([-2.0, 0.5]), torch.tensor([-1.0, 3.0])
    _, post_var = diffusion.posterior(torch.zeros(2), torch.zeros(2), lam, lam_next)
    _, fwd_var = diffusion.q_transition(torch.zeros(2), lam, lam_next)
    torch.testing.assert_close(diffusion.reverse_variance(lam, lam_next, 0.0), post_var)
    torch.testing.assert_close(diffusion.reverse_variance(lam, lam_next, 1.0), fwd_var)
    mid = diffusion.reverse_variance(lam, lam_next, 0.3)
    torch.testing.assert_close(mid, post_var**0.7 * fwd_var**0.3)
    with pytest.raises(ValueError, match="v interpolates"):
        diffusion.reverse_variance(lam, lam_next, 1.5)


def test_x_eps_round_trip():
    x, eps = torch.randn(5, 3), torch.randn(5, 3)
    lam = torch.linspace(-8, 8, 5)
    z = diffusion.q_sample(x, lam, eps)
    torch.testing.assert_close(diffusion.x_from_eps(z, lam, eps), x, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(diffusion.eps_from_x(z, lam, x), eps, atol=1e-3, rtol=1e-3)


def test_drop_labels_rate_and_validation():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (100_000,), generator=g)
    dropped = diffusion.drop_labels(labels, 0.2, 10, generator=g)
    rate = (dropped == 10).float().mean().item()
    assert rate == pytest.approx(0.2, abs=0.005)
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(diffusion.drop_labels(labels, 0.0, 10), labels)
    with pytest.raises(ValueError, match="p_uncond"):
        diffusion.drop_labels(labels, 1.5, 10)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\]"):
        diffusion.drop_labels(torch.tensor([0, 11]), 0.1, 10)


class _Recorder(torch.nn.Module):
    """A real (tiny) network that records its inputs, to check what eps_loss feeds a model."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)
        self.seen = None

    def forward(self, z, lam, labels):
        self.seen = (z, lam, labels)
        return self.lin(z.reshape(-1, 1)).reshape(z.shape)


def test_eps_loss_feeds_model_noised_inputs_and_drops_labels():
    model = _Recorder()
    x = torch.zeros(4096, 1, 2, 2)
    labels = torch.randint(0, 10, (4096,))
    g = torch.Generator().manual_seed(0)
    loss = diffusion.eps_loss(model, x, labels, p_uncond=0.5, num_classes=10, generator=g)
    z, lam, seen_labels = model.seen
    assert loss.ndim == 0 and loss.requires_grad
    assert lam.shape == (4096,) and lam.min() >= -20 and lam.max() <= 20
    # with x = 0, z = sigma * eps: unit-variance noise scaled by sigma(lam)
    _, sigma = schedules.alpha_sigma(lam)
    assert (z / sigma[:, None, None, None]).var().item() == pytest.approx(1.0, abs=0.05)
    assert (seen_labels == 10).float().mean().item() == pytest.approx(0.5, abs=0.03)
    per_sample = diffusion.eps_loss(model, x, labels, 0.1, 10, reduction="none")
    assert per_sample.shape == (4096,)
    with pytest.raises(ValueError, match="labels of shape"):
        diffusion.eps_loss(model, x, labels[:3], 0.1, 10)


# ---------------------------------------------------------------------------------------- the losses, by hand
# The references below are written from the paper's definitions (Ho & Salimans 2022, Sec. 2 and Alg. 1), not
# with the library's helpers. They replay the random numbers in the order the library draws them from the
# generator: one uniform u per sample, then eps, then (eps_loss only) one uniform per label for the dropout.
# That order is an implementation detail: if it changes, these references must change with it.


def _cosine_lam_by_hand(u: torch.Tensor, lam_min: float, lam_max: float) -> torch.Tensor:
    """lam(u) = -2 log tan(a u + b) with lam(0) = lam_max and lam(1) = lam_min (tan(b) = e^(-lam_max / 2))."""
    b = math.atan(math.exp(-lam_max / 2))
    a = math.atan(math.exp(-lam_min / 2)) - b
    return torch.tensor([-2.0 * math.log(math.tan(a * float(t) + b)) for t in u], dtype=torch.float64)


def _noised_by_hand(x: torch.Tensor, lam: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = alpha x + sigma eps with alpha^2 = sigmoid(lam) = 1 / (1 + e^-lam) and sigma^2 = sigmoid(-lam)."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    alpha = (1.0 / (1.0 + torch.exp(-lam))).sqrt().reshape(shape)
    sigma = (1.0 / (1.0 + torch.exp(lam))).sqrt().reshape(shape)
    return alpha * x + sigma * eps


class _FixedEpsNet(torch.nn.Module):
    """A tiny deterministic "network": a fixed linear map of z plus terms in lam and in the label.

    Its output depends on all three inputs, so a wrong z, lam or label changes the loss.
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        g = torch.Generator().manual_seed(123)
        self.register_buffer("weight", torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5)
        self.register_buffer("label_emb", torch.randn(num_classes + 1, dim, generator=g, dtype=torch.float64))

    def forward(self, z, lam, labels):
        flat = z.flatten(1) @ self.weight.T + 0.05 * lam[:, None] + 0.5 * self.label_emb[labels]
        return flat.reshape(z.shape)


class _FixedClassifier(torch.nn.Module):
    """A fixed linear classifier of (z, lam): logits = z W^T + lam v."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        g = torch.Generator().manual_seed(321)
        self.register_buffer("weight", torch.randn(num_classes, dim, generator=g, dtype=torch.float64))
        self.register_buffer("lam_weight", torch.randn(num_classes, generator=g, dtype=torch.float64) / 10)

    def forward(self, z, lam):
        return z.flatten(1) @ self.weight.T + lam[:, None] * self.lam_weight


def _batch(n=64, num_classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 3, 2, generator=g, dtype=torch.float64) * 2 - 1
    return x, torch.randint(0, num_classes, (n,), generator=g)


@pytest.mark.parametrize(("lam_min", "lam_max"), [(-20.0, 20.0), (-7.0, 11.0)])
def test_eps_loss_equals_the_papers_objective_computed_by_hand(lam_min, lam_max):
    """Alg. 1: lam from the cosine schedule, z = alpha x + sigma eps, labels dropped to the null index
    num_classes with probability p_uncond, and the per-pixel mean of (eps_theta(z, lam, c) - eps)^2."""
    num_classes, p_uncond = 10, 0.3
    x, labels = _batch(num_classes=num_classes)
    model = _FixedEpsNet(x[0].numel(), num_classes)

    g = torch.Generator().manual_seed(7)  # the same draws, replayed
    u = torch.rand(x.shape[0], generator=g, dtype=x.dtype)
    eps = torch.randn(x.shape, generator=g, dtype=x.dtype)
    dropped = torch.rand(labels.shape, generator=g) < p_uncond
    lam = _cosine_lam_by_hand(u, lam_min, lam_max)
    z = _noised_by_hand(x, lam, eps)
    c = torch.where(dropped, num_classes, labels)
    assert 0 < int(dropped.sum()) < len(labels)  # both kinds of label are exercised
    expected = ((model(z, lam, c) - eps) ** 2).flatten(1).mean(1)

    kwargs = dict(lam_min=lam_min, lam_max=lam_max)
    got = diffusion.eps_loss(model, x, labels, p_uncond, num_classes, torch.Generator().manual_seed(7),
                             reduction="none", **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    mean = diffusion.eps_loss(model, x, labels, p_uncond, num_classes, torch.Generator().manual_seed(7), **kwargs)
    torch.testing.assert_close(mean, expected.mean(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("lam_min", "lam_max"), [(-20.0, 20.0), (-7.0, 11.0)])
def test_classifier_loss_equals_cross_entropy_computed_by_hand(lam_min, lam_max):
    """lam from the cosine schedule, z = alpha x + sigma eps, then -log softmax(logits)[label], averaged."""
    num_classes = 10
    x, labels = _batch(num_classes=num_classes, seed=1)
    classifier = _FixedClassifier(x[0].numel(), num_classes)

    g = torch.Generator().manual_seed(11)
    u = torch.rand(x.shape[0], generator=g, dtype=x.dtype)
    eps = torch.randn(x.shape, generator=g, dtype=x.dtype)
    lam = _cosine_lam_by_hand(u, lam_min, lam_max)
    logits = classifier(_noised_by_hand(x, lam, eps), lam)
    log_norm = torch.log(torch.exp(logits - logits.max(1, keepdim=True).values).sum(1)) + logits.max(1).values
    expected = log_norm - logits[torch.arange(len(labels)), labels]

    kwargs = dict(lam_min=lam_min, lam_max=lam_max)
    got = diffusion.classifier_loss(classifier, x, labels, torch.Generator().manual_seed(11), reduction="none",
                                    **kwargs)
    # the library takes the cross-entropy of float32 logits: agreement to float32 precision
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-5)
    mean = diffusion.classifier_loss(classifier, x, labels, torch.Generator().manual_seed(11), **kwargs)
    torch.testing.assert_close(mean, expected.mean().float(), rtol=1e-5, atol=1e-5)


def test_cfg_endpoints_and_per_sample_w():
    ec, eu = torch.randn(3, 2), torch.randn(3, 2)
    torch.testing.assert_close(guidance.cfg(ec, eu, 0.0), ec)
    torch.testing.assert_close(guidance.cfg(ec, eu, -1.0), eu)
    w = torch.tensor([0.0, 1.0, 2.0])
    out = guidance.cfg(ec, eu, w)
    torch.testing.assert_close(out[2], 3 * ec[2] - 2 * eu[2])
    assert guidance.w_from_guidance_scale(7.5) == 6.5


@pytest.mark.parametrize("bad", [math.nan, math.inf, -2.0, 1e6])
def test_bad_w_is_rejected(bad):
    ec = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="guidance strength"):
        guidance.cfg(ec, ec, bad)
    with pytest.raises(ValueError, match="guidance strength"):
        guidance.cfg_eps_fn(lambda z, lam, c: z, torch.zeros(2, dtype=torch.long), bad, 10)


def test_cfg_eps_fn_doubles_the_batch_once_and_skips_when_it_can():
    calls = []

    def model(z, lam, labels):
        calls.append(labels.clone())
        return z * (labels[:, None].float() + 1)

    z, lam = torch.randn(3, 2), torch.zeros(3)
    labels = torch.tensor([0, 1, 2])
    out = guidance.cfg_eps_fn(model, labels, 2.0, num_classes=5)(z, lam)
    assert len(calls) == 1 and calls[0].tolist() == [0, 1, 2, 5, 5, 5]
    torch.testing.assert_close(out, guidance.cfg(model(z, lam, labels), model(z, lam, torch.full((3,), 5)), 2.0))
    calls.clear()
    guidance.cfg_eps_fn(model, labels, 0.0, 5)(z, lam)
    assert len(calls) == 1 and calls[0].tolist() == [0, 1, 2]
    calls.clear()
    guidance.cfg_eps_fn(model, labels, -1.0, 5)(z, lam)
    assert calls[0].tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="labels must lie"):
        guidance.cfg_eps_fn(model, torch.tensor([0, 6]), 1.0, 5)


def test_classifier_guidance_and_implicit_gradient():
    eps, grad = torch.randn(4, 3), torch.randn(4, 3)
    sigma = torch.rand(4, 1) + 0.1
    torch.testing.assert_close(guidance.classifier_guided_eps(eps, grad, sigma, 0.0), eps)
    torch.testing.assert_close(guidance.classifier_guided_eps(eps, grad, sigma, 2.0), eps - 2 * sigma * grad)
    ec, eu = torch.randn(4, 3), torch.randn(4, 3)
    ig = guidance.implicit_classifier_grad(ec, eu, sigma)
    # CFG with w equals classifier guidance of the conditional eps with the implicit classifier
    torch.testing.assert_close(guidance.cfg(ec, eu, 1.5), guidance.classifier_guided_eps(ec, ig, sigma, 1.5))
    with pytest.raises(ValueError, match="shapes must match"):
        guidance.implicit_classifier_grad(ec, eu[:, :2], sigma)
