"""Output parameterisations (eps, v, EDM) and loss weightings, tied to ``derivations.predictions``."""

from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp
import torch

from derivations import predictions as DP
from derivations.symbols import eps, lam, x, z
from minicfg.diffusion import eps_loss, q_sample, x_from_eps
from minicfg.nets import build_model
from minicfg.predictions import DENSITIES, PREDICTIONS, get_prediction, loss_weight, prediction_loss, sample_lams
from minicfg.schedules import log_snr_cosine
from minicfg.train import TrainConfig, Trainer, train

N = 400
LAM = torch.linspace(-20, 20, N, dtype=torch.float64)


def _draw(seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(N, generator=g, dtype=torch.float64) for _ in range(3))


def _f(expr, *args):
    fn = sp.lambdify(args, expr, modules="numpy")
    return lambda *vals: torch.tensor(np.broadcast_to(fn(*(np.asarray(v) for v in vals)), (N,)), dtype=torch.float64)


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_v_prediction_matches_its_derivation():
    d = DP.derive_v_prediction()
    xs, es, vs = _draw(0)
    zs = q_sample(xs, LAM, es)
    p = PREDICTIONS["v"]
    _close(p.to_eps(vs, zs, LAM, 1.0), _f(d["eps"], z, DP.vel, lam)(zs, vs, LAM))
    _close(p.target(xs, es, LAM, 1.0), _f(d["target"], x, eps, lam)(xs, es, LAM))
    _close(p.eps_mse_factor(LAM, 1.0), _f(d["mse_factor"], lam)(LAM))
    # and x from that eps is the derived x = alpha z - sigma v
    _close(x_from_eps(zs, LAM, p.to_eps(vs, zs, LAM, 1.0)), _f(d["x"], z, DP.vel, lam)(zs, vs, LAM))


@pytest.mark.parametrize("sigma_data", [0.5, 1.0, 2.0])
def test_edm_preconditioning_matches_its_derivation(sigma_data):
    r = DP.derive_edm_preconditioning()
    xs, es, fs = _draw(1)
    zs = q_sample(xs, LAM, es)
    p = PREDICTIONS["edm"]
    sub = {DP.d: sigma_data}
    _close(p.c_in(LAM, sigma_data), _f(r["c_in_vp"].subs(sub), lam)(LAM))
    _close(p.to_eps(fs, zs, LAM, sigma_data), _f(r["eps"].subs(sub), z, DP.F, lam)(zs, fs, LAM))
    _close(p.target(xs, es, LAM, sigma_data), _f(r["target"].subs(sub), x, eps, lam)(xs, es, LAM))
    _close(p.eps_mse_factor(LAM, sigma_data), _f(r["mse_factor"].subs(sub), lam)(LAM))


def test_edm_with_unit_data_scale_is_v_prediction():
    xs, es, vs = _draw(2)
    zs = q_sample(xs, LAM, es)
    v, edm = PREDICTIONS["v"], PREDICTIONS["edm"]
    _close(edm.target(xs, es, LAM, 1.0), -v.target(xs, es, LAM, 1.0))
    _close(edm.to_eps(-vs, zs, LAM, 1.0), v.to_eps(vs, zs, LAM, 1.0))


@pytest.mark.parametrize("name", sorted(PREDICTIONS))
def test_the_exact_target_gives_back_the_noise_in_float32(name):
    """The conversion the sampler relies on: a perfect prediction is a perfect eps, and its x-prediction is x."""
    lam32 = torch.linspace(-20, 20, 41)
    g = torch.Generator().manual_seed(3)
    xs = torch.rand(41, 64, generator=g) * 2 - 1
    es = torch.randn(41, 64, generator=g)
    lb = lam32[:, None]
    zs = q_sample(xs, lam32, es)
    p = PREDICTIONS[name]
    e = p.to_eps(p.target(xs, es, lb, 0.5), zs, lb, 0.5)
    torch.testing.assert_close(e, es, rtol=0, atol=1e-5)
    # x = (z - sigma eps) / alpha rounds to about 1e-7 * |z| / alpha in float32: 1e-2 at lam = -20
    torch.testing.assert_close(x_from_eps(zs, lam32, e), xs, rtol=0, atol=1e-2)


def test_min_snr_and_sigmoid_weights_match_their_formulas():
    d = DP.derive_min_snr_weight()
    for gamma in (1.0, 5.0):
        _close(loss_weight("min_snr", LAM, gamma), _f(d["eps_space"].subs(DP.gamma, gamma), lam)(LAM))
    # Kingma & Gao's sigmoid weighting, 1 / (1 + e^(lam - b)): near 1 at low SNR (lam << b), near 0 at high SNR
    for b in (-1.0, 2.0):
        _close(loss_weight("sigmoid", LAM, b), 1.0 / (1.0 + torch.exp(LAM - b)))
    assert loss_weight("sigmoid", torch.tensor([-20.0, 20.0]), 2.0).tolist() == pytest.approx([1.0, 0.0], abs=1e-7)
    assert loss_weight("none", LAM) is None
    with pytest.raises(ValueError, match="choose one of"):
        loss_weight("snr", LAM)


class _Fixed(torch.nn.Module):
    """A 'network' whose raw output is a fixed function of z, so losses can be checked by hand."""

    def __init__(self, prediction, sigma_data=0.5):
        super().__init__()
        self.config = SimpleNamespace(prediction=prediction, sigma_data=sigma_data)

    def raw(self, z, lam, labels):
        return 0.3 * z + 0.1


@pytest.mark.parametrize("name", sorted(PREDICTIONS))
@pytest.mark.parametrize("weighting", ["min_snr", "sigmoid"])
def test_weighted_loss_is_the_eps_space_error_times_the_weight(name, weighting):
    """``prediction_loss`` with a weighting is the same weighting of the eps-space error for every prediction."""
    model = _Fixed(name)
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(64, 1, 6, 4, generator=g) * 2 - 1  # non-square images
    y = torch.randint(0, 10, (64,), generator=g)
    loss = prediction_loss(model, x0, y, 0.0, 10, generator=torch.Generator().manual_seed(9), weighting=weighting)
    # the same draws, by hand
    g = torch.Generator().manual_seed(9)
    lams = log_snr_cosine(torch.rand(64, generator=g))
    es = torch.randn(x0.shape, generator=g)
    zs = q_sample(x0, lams, es)
    lb = lams[:, None, None, None]
    eps_hat = get_prediction(name).to_eps(model.raw(zs, lams, y), zs, lb, 0.5)
    # the weights written out (default parameters gamma = 5, b = 2), not read back from loss_weight
    weight = {"min_snr": torch.clamp(5.0 / torch.exp(lams), max=1.0),  # min(SNR, gamma) / SNR with SNR = e^lam
              "sigmoid": 1.0 / (1.0 + torch.exp(lams - 2.0))}[weighting]  # sigmoid(b - lam): small at high SNR
    by_hand = (weight * (eps_hat - es).pow(2).flatten(1).mean(1)).mean()
    torch.testing.assert_close(loss, by_hand, rtol=2e-4, atol=0)


def test_unweighted_eps_prediction_loss_is_the_papers_loss():
    model = build_model({"arch": "unet", "channels": (8, 16), "emb_dim": 16, "groups": 4})
    for p in model.parameters():
        p.data += 0.02 * torch.randn_like(p)
    x0 = torch.rand(16, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (16,))
    a = eps_loss(model, x0, y, 0.2, 10, generator=torch.Generator().manual_seed(4))
    b = prediction_loss(model, x0, y, 0.2, 10, generator=torch.Generator().manual_seed(4))
    assert a.item() == b.item()


@pytest.mark.parametrize("name", ["v", "edm"])
def test_unet_forward_returns_eps_of_its_raw_output(name):
    model = build_model({"arch": "unet", "channels": (8, 16), "emb_dim": 16, "groups": 4, "prediction": name})
    for p in model.parameters():
        p.data += 0.02 * torch.randn_like(p)
    zs = torch.randn(3, 1, 28, 28)
    lams = torch.tensor([-20.0, 0.0, 20.0])
    y = torch.tensor([0, 5, 10])
    expected = PREDICTIONS[name].to_eps(model.raw(zs, lams, y), zs, lams[:, None, None, None], 0.5)
    torch.testing.assert_close(model(zs, lams, y), expected)
    assert torch.isfinite(model(zs, lams, y)).all()


def test_unet_config_rejects_unknown_prediction_and_bad_data_scale():
    with pytest.raises(ValueError, match="unknown prediction 'x0'.*choose one of"):
        build_model({"arch": "unet", "prediction": "x0"})
    with pytest.raises(ValueError, match="sigma_data"):
        build_model({"arch": "unet", "prediction": "edm", "sigma_data": 0.0})


def test_lognormal_density_is_edms_and_stays_in_range():
    lams = sample_lams("lognormal", 40_000, -20.0, 20.0, torch.Generator().manual_seed(0), torch.float64)
    assert lams.min() >= -20 and lams.max() <= 20
    # EDM: ln sigma ~ N(-1.2, 1.2^2) and lam = -2 ln sigma, so lam ~ N(2.4, 2.4^2)
    assert abs(lams.mean().item() - 2.4) < 0.05 and abs(lams.std().item() - 2.4) < 0.05
    narrow = sample_lams("lognormal", 10_000, 0.0, 3.0, torch.Generator().manual_seed(1))
    assert narrow.min() >= 0 and narrow.max() <= 3 and narrow.std() > 0.5  # truncated, not piled at the ends
    cos = sample_lams("cosine", 100, -20.0, 20.0, torch.Generator().manual_seed(2))
    torch.testing.assert_close(cos, log_snr_cosine(torch.rand(100, generator=torch.Generator().manual_seed(2))))
    assert set(DENSITIES) >= {"cosine", "lognormal"}
    with pytest.raises(ValueError, match="choose one of"):
        sample_lams("laplace", 4, -20.0, 20.0)


@pytest.mark.parametrize("objective", ["v", "edm"])
def test_new_objectives_train_and_save_their_prediction(tmp_path, mnist_small, objective):
    recipe = TrainConfig(objective=objective, train_steps=40, batch_size=32, warmup_steps=3, ema_decay=0.9, lr=3e-3,
                         model={"channels": (8, 16), "emb_dim": 16, "groups": 4}, sample_every_s=1e9,
                         weighting="min_snr")
    trainer = train(recipe, tmp_path / "run", progress=False, data=mnist_small)
    assert trainer.model.config.prediction == objective
    from minicfg.checkpoint import load_model

    model, meta = load_model(tmp_path / "run" / "ema.safetensors")
    assert model.config.prediction == objective and meta["train"]["weighting"] == "min_snr"
    x0, y = mnist_small[0][:256], mnist_small[1][:256]
    untrained = Trainer(recipe, tmp_path / "u", data=mnist_small).model
    with torch.no_grad():
        losses = [prediction_loss(m, x0, y, 0.1, 10, generator=torch.Generator().manual_seed(7))
                  for m in (untrained, model)]
    assert losses[1] < 0.8 * losses[0]


def test_recipe_rejects_unknown_density_and_weighting():
    with pytest.raises(ValueError, match="lam density"):
        TrainConfig(density="beta").validate()
    with pytest.raises(ValueError, match="loss weighting"):
        TrainConfig(weighting="p2").validate()



def test_noisy_accuracy_counts_hits_per_lam():
    from minicfg.diffusion import noisy_accuracy

    labels = torch.tensor([0, 1, 2, 0])
    x0 = torch.zeros(4, 1, 5, 5)

    def says_zero_when_clean(z, lam):  # class 0 at lam >= 0, class 1 below
        return torch.nn.functional.one_hot((lam < 0).long(), 3).float()

    acc = noisy_accuracy(says_zero_when_clean, x0, labels, (-3.0, 5.0), torch.Generator().manual_seed(0))
    assert acc == {-3.0: 0.25, 5.0: 0.5}


def test_default_and_live_presets_predict_v_and_eps_stays_reachable():
    from minicfg.train import recipe_from

    assert recipe_from("default").objective == "v" and recipe_from("live").objective == "v"
    paper = recipe_from("default", objective="eps")
    assert paper.objective == "eps" and paper.train_steps == recipe_from("default").train_steps
