"""The guidance variants beyond Eq. 6 (interval, rescale, autoguidance): their algebra on the exact-score toy,
w = 0 or an empty interval giving the plain prediction, their options, and the sweep and CLI that run them."""

import dataclasses
import math

import numpy as np
import pytest
import sympy as sp
import torch

from derivations import guidance_variants as dv
from derivations.symbols import alpha, eps_c, sigma, w
from derivations.symbols import lam as lam_symbol
from minicfg import cli, guidance, toy
from minicfg.checkpoint import load_model
from minicfg.diffusion import x_from_eps
from minicfg.generate import class_labels, generate
from minicfg.guidance_variants import INTERVAL_EDM2, lam_from_ve_sigma, rescale_eps
from minicfg.sweep import read_csv, sweep, write_csv
from minicfg.sweep_plots import frontier_figure, seed_spread

DT = torch.float64
MIX = toy.three_gaussians(dtype=DT)
LABELS = torch.tensor([0, 1, 2, 1, 0, 2])


def _z(n=6, seed=3):
    return torch.randn(n, 2, dtype=DT, generator=torch.Generator().manual_seed(seed))


def _lam(value, n=6):
    return torch.full((n,), float(value), dtype=DT)


class Counting:
    """The toy mixture as a model that counts the samples it is asked for."""

    def __init__(self, mixture):
        self.mixture, self.num_classes, self.calls = mixture, mixture.num_classes, 0

    def __call__(self, z, lam, labels):
        self.calls += z.shape[0]
        return self.mixture(z, lam, labels)


# -- interval ------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam_value", [-3.0, -0.95, 0.5, 2.52, 4.0])
def test_interval_is_cfg_inside_and_conditional_outside(lam_value):
    z, lam = _z(), _lam(lam_value)
    got = guidance.build_guidance("interval", MIX, LABELS, 2.0)(z, lam)
    inside = INTERVAL_EDM2[0] <= lam_value <= INTERVAL_EDM2[1]
    expected = toy.cfg_eps_fn(MIX, LABELS, 2.0 if inside else 0.0)(z, lam)
    torch.testing.assert_close(got, expected)


def test_interval_mixed_lams_and_per_sample_w_and_one_pass_outside():
    z = _z()
    lam = torch.tensor([-5.0, 0.0, 1.0, 3.0, -1.0, 2.0], dtype=DT)
    ws = torch.tensor([1.0, 2.0, 0.5, 4.0, 3.0, 1.5], dtype=DT)
    got = guidance.build_guidance("interval", MIX, LABELS, ws, lam_low=-1.0, lam_high=2.0)(z, lam)
    inside = (lam >= -1.0) & (lam <= 2.0)
    expected = toy.cfg_eps_fn(MIX, LABELS, torch.where(inside, ws, 0.0))(z, lam)
    torch.testing.assert_close(got, expected)
    model = Counting(MIX)
    guidance.build_guidance("interval", model, LABELS, 3.0)(z, _lam(-10.0))
    assert model.calls == len(LABELS)  # outside the interval only the conditional pass runs
    guidance.build_guidance("interval", model, LABELS, 3.0)(z, _lam(0.0))
    assert model.calls == 3 * len(LABELS)


def test_an_empty_interval_samples_exactly_the_conditional_model():
    model, _ = load_model()
    labels = class_labels(10, 1)
    kw = dict(n_steps=6, seed=4)
    plain = generate(model, labels, 0.0, **kw)
    torch.testing.assert_close(generate(model, labels, 3.0, guidance="interval", lam_low=30.0, lam_high=40.0, **kw),
                               plain, rtol=0, atol=0)
    assert not torch.equal(generate(model, labels, 3.0, guidance="interval", **kw), plain)


def test_interval_options_are_checked():
    with pytest.raises(ValueError, match="lam_low <= lam_high"):
        guidance.build_guidance("interval", MIX, LABELS, 1.0, lam_low=2.0, lam_high=1.0)
    with pytest.raises(ValueError, match="outside"):
        guidance.build_guidance("interval", MIX, LABELS, 500.0)
    everywhere = guidance.build_guidance("interval", MIX, LABELS, 1.0, lam_low=-math.inf, lam_high=math.inf)
    torch.testing.assert_close(everywhere(_z(), _lam(-25.0)), toy.cfg_eps_fn(MIX, LABELS, 1.0)(_z(), _lam(-25.0)))


def test_the_edm2_interval_is_its_noise_levels_as_log_snrs():
    lam_of = sp.lambdify(dv.sigma_ve, dv.derive_ve_sigma()["lam"])
    sigma_of = sp.lambdify(lam_symbol, dv.derive_ve_sigma()["sigma_ve"])
    for s in (0.283, 1.609, 80.0, 0.002):
        assert lam_from_ve_sigma(s) == pytest.approx(lam_of(s))
    assert INTERVAL_EDM2 == (pytest.approx(-0.95, abs=0.005), pytest.approx(2.52, abs=0.005))
    lam = torch.tensor(1.3, dtype=DT)  # sigma / alpha of the forward process is the VE noise level
    from minicfg.schedules import alpha_sigma

    a, s = alpha_sigma(lam)
    assert float(s / a) == pytest.approx(math.exp(-1.3 / 2))
    assert sigma_of(1.3) == pytest.approx(float(s / a))
    with pytest.raises(ValueError, match="positive"):
        lam_from_ve_sigma(0.0)


# -- rescale -------------------------------------------------------------------------------------
def _images(n=4, seed=5):
    return torch.randn(n, 1, 6, 5, dtype=DT, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("lam_value", [-8.0, 0.0, 6.0])
def test_rescaled_x_prediction_is_the_papers_mix(lam_value):
    z, lam = _images(), _lam(lam_value, 4)
    eps_cond, eps_cfg = _images(seed=6), _images(seed=7) * 1.7
    phi = 0.7
    out = rescale_eps(z, lam, eps_cond, eps_cfg, phi)
    x_cond, x_cfg, x_out = (x_from_eps(z, lam, e) for e in (eps_cond, eps_cfg, out))
    ratio = x_cond.flatten(1).std(1) / x_cfg.flatten(1).std(1)
    expected = phi * ratio[:, None, None, None] * x_cfg + (1 - phi) * x_cfg
    torch.testing.assert_close(x_out, expected)
    full = x_from_eps(z, lam, rescale_eps(z, lam, eps_cond, eps_cfg, 1.0))  # phi = 1: the conditional std exactly
    torch.testing.assert_close(full.flatten(1).std(1), x_cond.flatten(1).std(1))
    # the eps form of the derivation, evaluated on the same numbers
    f = sp.lambdify((dv.eps_cfg, dv.x_cfg, alpha, sigma, dv.phi, dv.ratio), dv.derive_rescale_eps()["eps"])
    from minicfg.schedules import alpha_sigma

    a, s = alpha_sigma(lam[:, None, None, None])
    torch.testing.assert_close(out, f(eps_cfg, x_cfg, a, s, phi, ratio[:, None, None, None]))


def test_rescale_in_eps_space_matches_the_conditional_eps_std():
    z, lam = _images(), _lam(1.0, 4)
    eps_cond, eps_cfg = _images(seed=6), _images(seed=7) * 2.5
    out = rescale_eps(z, lam, eps_cond, eps_cfg, 1.0, space="eps")
    torch.testing.assert_close(out.flatten(1).std(1), eps_cond.flatten(1).std(1))
    torch.testing.assert_close(rescale_eps(z, lam, eps_cond, eps_cfg, 0.0, space="eps"), eps_cfg)


@pytest.mark.parametrize("space", ["x", "eps"])
def test_the_rescale_builder_pulls_the_spread_back_to_the_conditional_prediction(space):
    """The builder's whole computation written out on the toy's exact eps: CFG's guided prediction, rescaled to
    the standard deviation of the conditional prediction (not the unconditional one), mixed with phi."""
    z, lam, w_, phi = _z(), _lam(0.5), 2.0, 0.7
    e_cond = MIX(z, lam, LABELS)
    e_uncond = MIX(z, lam, torch.full_like(LABELS, MIX.num_classes))
    e_cfg = (1 + w_) * e_cond - w_ * e_uncond
    a, s = torch.sigmoid(lam)[:, None].sqrt(), torch.sigmoid(-lam)[:, None].sqrt()  # alpha^2 = sigmoid(lam)
    to_x, to_eps = (lambda e: (z - s * e) / a, lambda x: (z - a * x) / s) if space == "x" else (lambda e: e,) * 2
    p_cond, p_cfg = to_x(e_cond), to_x(e_cfg)
    target = p_cond.std(1, keepdim=True)
    assert not torch.allclose(target, to_x(e_uncond).std(1, keepdim=True), rtol=0.05)  # the two spreads differ
    expected = to_eps(phi * p_cfg * target / p_cfg.std(1, keepdim=True) + (1 - phi) * p_cfg)
    got = guidance.build_guidance("rescale", MIX, LABELS, w_, phi=phi, space=space)(z, lam)
    torch.testing.assert_close(got, expected)


def test_rescale_with_phi_zero_or_w_zero_is_plain_guidance():
    z, lam = _z(), _lam(0.5)
    torch.testing.assert_close(guidance.build_guidance("rescale", MIX, LABELS, 2.0, phi=0.0)(z, lam),
                               toy.cfg_eps_fn(MIX, LABELS, 2.0)(z, lam))
    torch.testing.assert_close(guidance.build_guidance("rescale", MIX, LABELS, 0.0)(z, lam), MIX(z, lam, LABELS))
    changed = guidance.build_guidance("rescale", MIX, LABELS, 2.0)(z, lam)
    assert not torch.allclose(changed, toy.cfg_eps_fn(MIX, LABELS, 2.0)(z, lam))
    with pytest.raises(ValueError, match="phi"):
        guidance.build_guidance("rescale", MIX, LABELS, 1.0, phi=1.5)
    with pytest.raises(ValueError, match="space"):
        guidance.build_guidance("rescale", MIX, LABELS, 1.0, space="v")


# -- autoguidance --------------------------------------------------------------------------------
def _unconditional(mixture):
    return lambda z, lam, labels: mixture(z, lam, torch.full_like(labels, mixture.num_classes))


@pytest.mark.parametrize("w_value", [0.5, 2.0, 4.0])
def test_autoguidance_by_the_unconditional_model_is_exact_cfg(w_value):
    z, lam = _z(), _lam(-0.7)
    got = guidance.build_guidance("autoguidance", MIX, LABELS, w_value, weak=_unconditional(MIX))(z, lam)
    torch.testing.assert_close(got, toy.cfg_eps_fn(MIX, LABELS, w_value)(z, lam))
    f = sp.lambdify((eps_c, dv.eps_weak, w), dv.derive_autoguidance()["guided_eps"])
    weaker = toy.three_gaussians(var=1.8, dtype=DT)  # a genuinely different, blurrier model of the same classes
    got = guidance.build_guidance("autoguidance", MIX, LABELS, w_value, weak=weaker)(z, lam)
    torch.testing.assert_close(got, f(MIX(z, lam, LABELS), weaker(z, lam, LABELS), w_value))


def test_autoguidance_at_w_zero_never_calls_the_weak_model_and_needs_one():
    weak = Counting(toy.three_gaussians(var=1.8, dtype=DT))
    z, lam = _z(), _lam(0.0)
    out = guidance.build_guidance("autoguidance", MIX, LABELS, 0.0, weak=weak)(z, lam)
    torch.testing.assert_close(out, MIX(z, lam, LABELS))
    assert weak.calls == 0
    with pytest.raises(ValueError, match="weak model"):
        guidance.build_guidance("autoguidance", MIX, LABELS, 1.0)


def test_autoguidance_refuses_a_weak_model_of_other_data():
    model, _ = load_model()
    weak, _ = load_model(role="weak_model")
    assert weak.config.channels != model.config.channels  # the shipped weak model is the smaller network
    weak.config = dataclasses.replace(weak.config, num_classes=5)
    with pytest.raises(ValueError, match="num_classes"):
        guidance.build_guidance("autoguidance", model, class_labels(10, 1), 1.0, weak=weak)


# -- sweep and CLI -------------------------------------------------------------------------------
def test_a_sweep_of_a_variant_keeps_its_guidance_and_options(tmp_path):
    model, meta = load_model()
    csv_path = tmp_path / "sweep.csv"
    quiet = dict(n_per_class=1, n_steps=2, csv_path=csv_path, meta=meta, log=lambda *a: None)
    rows = sweep(model, [0.0, 1.0], **quiet, guidance="interval", options={"lam_low": -1.0, "lam_high": 2.0})
    assert [r["guidance"] for r in rows] == ["interval"] * 2 and rows[0]["options"] == "lam_high=2 lam_low=-1"
    again = sweep(model, [1.0], **quiet, guidance="interval", options={"lam_low": -1.0, "lam_high": 2.0})
    assert again[0]["fid"] == rows[1]["fid"]  # read back, not sampled again
    other = sweep(model, [1.0], **quiet, guidance="interval", options={"lam_low": -3.0, "lam_high": 2.0})
    assert len(read_csv(csv_path)) == 3 and other[0]["options"] == "lam_high=2 lam_low=-3"
    (default,) = sweep(model, [1.0], **quiet, guidance="rescale")
    assert default["options"] == "phi=0.7 space=x"  # the defaults that were run are recorded too
    with pytest.raises(ValueError, match="does not take"):
        sweep(model, [1.0], **quiet, guidance="rescale", options={"lam_low": 1.0})


def test_sweep_files_written_before_variants_read_as_plain_cfg(tmp_path):
    old = tmp_path / "old.csv"
    header = ("label,p_uncond,train_steps,sampler,n_steps,seed,n,w,"
              "accuracy,fid,inception_score,precision,recall,sample_s")
    old.write_text(header + "\nm,0.1,6000,ancestral,50,1,1000,0.5,0.99,8.6,9.9,0.9,0.8,70\n")
    (row,) = read_csv(old)
    assert row["guidance"] == "cfg" and row["options"] == ""
    write_csv([row], tmp_path / "new.csv")
    assert read_csv(tmp_path / "new.csv")[0]["guidance"] == "cfg"


def test_cli_samples_and_sweeps_with_a_variant(tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert cli.main(["sample", "--guidance", "rescale", "--phi", "0.5", "--w", "0,2", "--n-per-class", "1",
                     "--n-steps", "3", "--no-progress", "--out", str(out)]) == 0
    assert np.load(out)["images"].shape == (20, 1, 28, 28)
    assert cli.main(["sweep", "--guidance", "autoguidance", "--w", "1", "--n-per-class", "1", "--n-steps", "2",
                     "--paper", "none", "--no-progress", "--out", str(tmp_path / "s")]) == 0
    (row,) = read_csv(tmp_path / "s" / "sweep.csv")
    assert row["guidance"] == "autoguidance" and row["options"].startswith("weak=net:")
    with pytest.raises(SystemExit):
        cli.main(["sample", "--guidance", "cfg", "--phi", "0.5", "--out", str(out)])
    assert "option 'phi' is taken neither by guidance 'cfg'" in capsys.readouterr().err


# -- the frontier figure and the seed spread -----------------------------------------------------
def _row(guidance_name, w_value, seed=1, accuracy=0.9, recall=0.8, fid=5.0, options=""):
    return {"label": "m", "guidance": guidance_name, "options": options, "sampler": "ancestral", "n_steps": 50,
            "n": 1000, "seed": seed, "w": w_value, "accuracy": accuracy, "recall": recall, "fid": fid}


def test_seed_spread_is_the_largest_std_over_seeds_with_fid_relative():
    rows = [_row("cfg", 0.1, s, accuracy=a, recall=r, fid=f)
            for s, a, r, f in ((1, 0.96, 0.85, 4.0), (2, 0.98, 0.86, 5.0), (3, 0.97, 0.84, 6.0))]
    rows += [_row("cfg", 1.0, s, accuracy=1.0, recall=0.7, fid=f) for s, f in ((1, 18.0), (2, 22.0))]
    rows += [_row("interval", 1.0)]  # one seed only: not a spread
    spread = seed_spread(rows)
    assert spread["settings"] == 2
    assert spread["accuracy"] == pytest.approx(np.std([0.96, 0.98, 0.97], ddof=1))  # the larger of the two
    assert spread["recall"] == pytest.approx(np.std([0.85, 0.86, 0.84], ddof=1))
    assert spread["fid_rel"] == pytest.approx(max(1.0 / 5.0, np.std([18.0, 22.0], ddof=1) / 20.0))
    with pytest.raises(ValueError, match="two or more seeds"):
        seed_spread([_row("cfg", 0.1)])


def test_frontier_figure_draws_each_method_in_order_with_error_bars():
    rows = [_row("cfg", w_value, fid=4 + w_value) for w_value in (0, 1, 2)]
    rows += [_row("autoguidance", w_value, fid=3 + w_value, options="weak=net:ab") for w_value in (1, 2)]
    spread = {"accuracy": 0.01, "recall": 0.01, "fid_rel": 0.1}
    fig = frontier_figure(rows, names={("cfg", ""): "CFG"}, spread=spread)
    fidelity, diversity = fig.axes
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["CFG", "guidance = autoguidance, options = weak=net:ab"]
    assert len(fidelity.collections) >= 4  # x and y error bars of both curves
    assert fidelity.get_xlabel().startswith("accuracy") and diversity.get_xlabel().startswith("recall")
    plain = frontier_figure(rows)
    assert not plain.axes[0].collections  # no spread given, no error bars
