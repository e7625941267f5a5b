"""Classifier guidance: the autograd gradient, the guided eps, and the noisy classifier's training."""

import pytest
import torch

from minicfg import guidance, samplers, schedules
from minicfg.diffusion import classifier_loss
from minicfg.nets import NoisyClassifier, NoisyClassifierConfig
from minicfg.train import TrainConfig, Trainer


def _classifier(seed=0):
    torch.manual_seed(seed)
    return NoisyClassifier(NoisyClassifierConfig(channels=(8, 16), emb_dim=16, groups=4)).double()


def test_classifier_grad_matches_finite_differences():
    clf = _classifier()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 1, 28, 28, generator=g, dtype=torch.float64)
    lam = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
    labels = torch.tensor([1, 7, 3])
    grad = guidance.classifier_grad(clf, z, lam, labels)

    def log_p(zz):
        return torch.log_softmax(clf(zz, lam), 1).gather(1, labels[:, None]).sum()

    h = 1e-6
    for idx in [(0, 0, 5, 7), (1, 0, 14, 14), (2, 0, 27, 0), (2, 0, 3, 20)]:
        e = torch.zeros_like(z)
        e[idx] = h
        with torch.no_grad():
            fd = (log_p(z + e) - log_p(z - e)) / (2 * h)
        assert grad[idx].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-9)


def test_classifier_eps_fn_is_eps_minus_w_sigma_grad_and_w0_is_the_base_model():
    clf = _classifier()
    base = lambda z, lam: 0.5 * z  # a fixed eps-callable: the guidance must add exactly -w sigma grad
    z = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    lam = torch.tensor([-5.0, -1.0, 1.0, 5.0], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 9])
    torch.testing.assert_close(guidance.classifier_eps_fn(base, clf, labels, 0.0)(z, lam), base(z, lam))
    guided = guidance.classifier_eps_fn(base, clf, labels, 2.5)(z, lam)
    _, sigma = schedules.alpha_sigma(lam)
    grad = guidance.classifier_grad(clf, z, lam, labels)
    torch.testing.assert_close(guided, base(z, lam) - 2.5 * sigma[:, None, None, None] * grad)
    with pytest.raises(ValueError, match="labels must lie"):
        guidance.classifier_eps_fn(base, clf, torch.tensor([0, 1, 2, 10]), 1.0)(z, lam)
    with pytest.raises(ValueError, match="guidance strength"):
        guidance.classifier_eps_fn(base, clf, labels, float("nan"))


@pytest.mark.parametrize("batch", [1, 5])
def test_classifier_guidance_runs_in_both_samplers_under_no_grad(batch):
    clf = _classifier().float()
    base = lambda z, lam: 0.1 * z
    labels = torch.arange(batch) % 10
    fn = guidance.classifier_eps_fn(base, clf, labels, 1.0)
    lams = schedules.sampling_lams(4, -10.0, 10.0)
    z = torch.randn(batch, 1, 28, 28)
    with torch.no_grad():
        for x in (samplers.ancestral(fn, z, lams, clip_x=(-1, 1), generator=torch.Generator().manual_seed(0)),
                  samplers.ddim(fn, z, lams, clip_x=(-1, 1))):
            assert x.shape == z.shape and torch.isfinite(x).all()


def test_noisy_classifier_learns_from_noised_real_digits(tmp_path, mnist_small):
    recipe = TrainConfig(objective="noisy_classifier", train_steps=150, batch_size=64, lr=3e-3, warmup_steps=5,
                         ema_decay=0.9, model={"channels": (16, 32), "emb_dim": 32, "groups": 4}, sample_every_s=1e9)
    trainer = Trainer(recipe, tmp_path / "clf", data=mnist_small)
    x, y = mnist_small[0][:256], mnist_small[1][:256]
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        before = classifier_loss(trainer.model, x, y, generator=g, lam_min=2.0, lam_max=8.0).item()
    trainer.run(progress=False)
    model = trainer.ema.module.eval()
    g.manual_seed(5)
    with torch.no_grad():
        after = classifier_loss(model, x, y, generator=g, lam_min=2.0, lam_max=8.0).item()
        acc = (model(x, torch.full((256,), 6.0)).argmax(1) == y).float().mean().item()
    assert after < 0.9 * before
    assert acc > 0.4, acc  # chance is 0.1; 150 small steps on noised digits already get about 0.6
