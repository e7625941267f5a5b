"""Post-hoc EMA (Karras et al. 2024, Sec. 3): widths, the overlap integral, and EMAs rebuilt from snapshots.

The independent statements: EDM2's published exponents for its two stored widths; the overlap integral
computed numerically; and an EMA rebuilt from snapshots of a known trajectory against the same EMA run
directly over that trajectory with torch's AveragedModel, the update the Trainer uses.
"""

import math
from math import comb

import numpy as np
import pytest
import sympy as sp
import torch
from torch.optim.swa_utils import AveragedModel

from derivations.posthoc_ema import derive_overlap, derive_sigma_rel
from minicfg import cli
from minicfg.checkpoint import CheckpointError, load_model, load_tensors
from minicfg.posthoc_ema import ema_width, fit, gamma_for, overlap, sigma_rel, snapshot_steps, synthesize
from minicfg.train import TrainConfig, Trainer, _ema_fn, train


@pytest.mark.parametrize("gamma", [0.0, 1.5, 6.94, 16.97, 80.0])
def test_sigma_rel_is_the_derived_width(gamma):
    d = derive_sigma_rel()
    assert sigma_rel(gamma) == pytest.approx(float(d["sigma_rel"].subs(d["gamma"], gamma)), rel=1e-12)


def test_sigma_rel_is_the_standard_deviation_of_the_power_density_numerically():
    tau = np.linspace(0.0, 1.0, 2_000_001)
    for gamma in (0.0, 3.0, 12.0):
        p = (gamma + 1) * tau**gamma
        mean = np.trapezoid(tau * p, tau)
        assert math.sqrt(np.trapezoid((tau - mean) ** 2 * p, tau)) == pytest.approx(sigma_rel(gamma), rel=1e-6)


@pytest.mark.parametrize("width, published", [(0.05, 16.97), (0.10, 6.94)])
def test_gamma_for_gives_edm2s_exponents(width, published):
    # Karras et al. 2024, Sec. 3.2: the two stored profiles sigma_rel = 0.05 and 0.10 are gamma = 16.97 and 6.94
    assert gamma_for(width) == pytest.approx(published, abs=0.005)


@pytest.mark.parametrize("width", [0.01, 0.033, 0.2, math.sqrt(1 / 12)])
def test_gamma_for_inverts_sigma_rel(width):
    assert sigma_rel(gamma_for(width)) == pytest.approx(width, rel=1e-9)


@pytest.mark.parametrize("width", [0.0, -0.1, 0.3, float("nan")])
def test_gamma_for_refuses_widths_no_power_ema_has(width):
    with pytest.raises(ValueError, match="sigma_rel must lie in"):
        gamma_for(width)


@pytest.mark.parametrize("g1, t1, g2, t2", [(6.94, 1000, 16.97, 1000), (16.97, 400, 6.94, 1000),
                                            (6.94, 1000, 2.0, 600), (0.0, 10, 0.0, 30)])
def test_overlap_is_the_integral_of_the_two_densities(g1, t1, g2, t2):
    tau = np.linspace(0.0, min(t1, t2), 2_000_001)
    numeric = np.trapezoid((g1 + 1) * tau**g1 / t1 ** (g1 + 1) * (g2 + 1) * tau**g2 / t2 ** (g2 + 1), tau)
    assert overlap(g1, t1, g2, t2) == pytest.approx(numeric, rel=1e-6)
    d = derive_overlap()
    small, large = ((g1, t1), (g2, t2)) if t1 <= t2 else ((g2, t2), (g1, t1))
    symbolic = d["overlap"].subs({d["gamma"]: small[0], d["t"]: small[1], d["gamma_2"]: large[0], d["t_2"]: large[1]})
    assert overlap(g1, t1, g2, t2) == pytest.approx(float(sp.N(symbolic)), rel=1e-9)


def test_overlap_does_not_overflow_for_narrow_emas_of_long_runs():
    assert math.isfinite(overlap(gamma_for(0.01), 100_000, gamma_for(0.01), 100_000))


def _power_ema_run(thetas, widths):
    """AveragedModels with the Trainer's power-EMA update over the vector models ``thetas`` (T, D)."""
    model = torch.nn.Linear(thetas.shape[1], 1, bias=False)
    emas = [AveragedModel(model, avg_fn=_ema_fn(0.0, 1.0 / (gamma_for(w) + 1.0)), use_buffers=True) for w in widths]
    held = {}
    for t, theta in enumerate(thetas, start=1):
        with torch.no_grad():
            model.weight.copy_(theta[None])
        for e in emas:
            e.update_parameters(model)
        held[t] = [e.module.weight.detach().clone()[0] for e in emas]
    return held


def test_an_ema_rebuilt_from_snapshots_matches_the_ema_run_directly():
    steps, every = 2000, 100
    t = torch.arange(1, steps + 1, dtype=torch.float64)[:, None] / steps
    phase = torch.linspace(0.0, 3.0, 6, dtype=torch.float64)[None]
    thetas = torch.sin(5 * t + phase) + t * phase + 0.02 * torch.randn(steps, 6, dtype=torch.float64,
                                                                       generator=torch.Generator().manual_seed(0))
    stored = (0.05, 0.10)
    targets = (0.03, 0.07, 0.15)
    held = _power_ema_run(thetas.float(), stored + targets)
    coords = [(gamma_for(w), float(s)) for s in range(every, steps + 1, every) for w in stored]
    values = torch.stack([held[s][i] for s in range(every, steps + 1, every) for i in range(len(stored))]).double()
    for j, width in enumerate(targets):
        for at in (steps, steps // 2):
            x, _ = fit([c for c in coords if c[1] <= at], gamma_for(width), at)
            rebuilt = torch.from_numpy(x) @ values[: len(x)]
            direct = held[at][len(stored) + j].double()
            nearest = held[at][0 if width < 0.075 else 1].double()
            # the rebuilt EMA is the direct one, ten times closer to it than the nearest stored profile is (the
            # widest miss: width 0.03, outside the stored pair, from the ten snapshots up to step 1000)
            assert (rebuilt - direct).abs().max() < 0.1 * (nearest - direct).abs().max(), (width, at)
            if at == steps and 0.05 <= width <= 0.10:  # between the stored widths, from 20 snapshots: close
                assert (rebuilt - direct).abs().max() < 5e-4, (width, at)


def _weighted_sd(weights):
    t = np.arange(1, len(weights) + 1, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    mean = (w * t).sum() / w.sum()
    return math.sqrt((w * (t - mean) ** 2).sum() / w.sum())


def test_ema_width_of_the_usual_ema_is_the_sd_of_its_written_out_weights():
    # the warm-up EMA weighs model t by C(t + 8, 8) while below its cap (tests/test_ema_weights.py), the first by 10
    steps = 40
    weights = [10] + [comb(t + 8, 8) for t in range(2, steps + 1)]
    assert ema_width(0.999, steps) == pytest.approx(_weighted_sd(weights) / steps, rel=1e-9)
    # C(t + 8, 8) grows like t^8: a power EMA of exponent 8, for long runs under the cap
    assert ema_width(0.999, 6000) == pytest.approx(sigma_rel(8.0), rel=0.01)
    # the power EMA of ema_fraction = 1 / (gamma + 1) has the width of its exponent
    assert ema_width(0.0, 6000, fraction=1 / (6.94 + 1)) == pytest.approx(sigma_rel(6.94), rel=0.01)
    # a capped decay makes the EMA narrower once the cap is reached (0.9 from update 81 on)
    assert ema_width(0.9, 6000) < 0.01


def test_fit_refuses_a_step_past_the_last_snapshot():
    with pytest.raises(ValueError, match="past the last snapshot"):
        fit([(6.94, 100.0)], 6.94, 200.0)
    with pytest.raises(ValueError, match="snapshot_every"):
        fit([], 6.94, 200.0)


def _recipe(**kw):
    base = dict(objective="v", train_steps=12, batch_size=16, warmup_steps=2, ema_decay=0.9, log_every=4,
                checkpoint_every_s=1e9, model={"channels": (8, 16), "blocks_per_level": 1}, snapshot_every=5)
    base.update(kw)
    return TrainConfig(**base)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()


def test_the_trainers_profiles_are_power_emas_of_its_models(tmp_path, mnist_small):
    # the power EMA of exponent gamma weighs the model after step t by t^(gamma + 1) - (t - 1)^(gamma + 1)
    trainer = Trainer(_recipe(), tmp_path, data=mnist_small)
    trainer._ensure_data()
    trainer._make_sched()
    seen = []
    for _ in range(8):
        trainer.train_step()
        seen.append(_flat(trainer.model))
    assert len(trainer.profiles) == 2
    for gamma, profile in zip(trainer.gammas, trainer.profiles, strict=True):
        weights = torch.tensor([t ** (gamma + 1) - (t - 1) ** (gamma + 1) for t in range(1, 9)], dtype=torch.float64)
        expected = (weights[:, None] * torch.stack(seen)).sum(0) / weights.sum()
        got = _flat(profile.module)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_training_writes_snapshots_at_the_multiples_and_the_end(tmp_path, mnist_small):
    trainer = train(_recipe(), tmp_path, progress=False, data=mnist_small)
    assert snapshot_steps(tmp_path) == [5, 10, 12]
    snap, _ = load_model(tmp_path / "snapshots" / "step_000012.safetensors")
    final, _ = load_model(tmp_path / "ema.safetensors")
    for (name, a), b in zip(snap.state_dict().items(), final.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    tensors, meta = load_tensors(tmp_path / "snapshots" / "step_000010.safetensors")
    assert meta["step"] == 10 and [p["sigma_rel"] for p in meta["profiles"]] == [0.05, 0.10]
    assert trainer.step == 12


def test_rebuilding_a_stored_width_at_a_stored_step_gives_that_profile(tmp_path, mnist_small):
    train(_recipe(), tmp_path, progress=False, data=mnist_small)
    model, meta = synthesize(tmp_path, 0.10, out=tmp_path / "ph.safetensors")
    tensors, _ = load_tensors(tmp_path / "snapshots" / "step_000012.safetensors")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, tensors[f"profile1.{k}"], rtol=1e-5, atol=1e-6, msg=k)
    assert meta["posthoc_ema"]["fit_error"] < 1e-6
    reloaded, _ = load_model(tmp_path / "ph.safetensors")
    torch.testing.assert_close(reloaded.state_dict(), model.state_dict())
    with pytest.raises(ValueError, match="no snapshot at step 7"):
        synthesize(tmp_path, 0.10, step=7)


def test_the_ema_command_writes_a_rebuilt_ema(tmp_path, mnist_small, capsys):
    train(_recipe(), tmp_path, progress=False, data=mnist_small)
    out = tmp_path / "ema_007.safetensors"
    assert cli.main(["ema", str(tmp_path), "--sigma-rel", "0.07", "--step", "10", "--out", str(out)]) in (0, None)
    assert "sigma_rel 0.07" in capsys.readouterr().out
    model, meta = load_model(out)
    assert meta["step"] == 10 and meta["posthoc_ema"]["sigma_rel"] == 0.07
    expected, _ = synthesize(tmp_path, 0.07, step=10)
    torch.testing.assert_close(model.state_dict(), expected.state_dict())
    with pytest.raises(SystemExit):
        cli.main(["ema", str(tmp_path), "--sigma-rel", "0", "--out", str(out)])


def test_resume_keeps_the_profiles_of_the_uninterrupted_run(tmp_path, mnist_small):
    train(_recipe(), tmp_path / "whole", progress=False, data=mnist_small)
    split = tmp_path / "split"
    Trainer(_recipe(), split, data=mnist_small).run(progress=False, stop_after=7)
    train(_recipe(), split, resume=True, progress=False, data=mnist_small)
    a, _ = load_tensors(tmp_path / "whole" / "snapshots" / "step_000012.safetensors")
    b, _ = load_tensors(split / "snapshots" / "step_000012.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_a_run_without_profiles_cannot_resume_with_snapshots(tmp_path, mnist_small):
    train(_recipe(snapshot_every=0, train_steps=4), tmp_path, progress=False, data=mnist_small)
    with pytest.raises(CheckpointError, match="without --snapshot-every"):
        train(_recipe(train_steps=8), tmp_path, resume=True, progress=False, data=mnist_small)
    with pytest.raises(CheckpointError, match="--snapshot-every N"):
        synthesize(tmp_path, 0.1)


def test_snapshot_every_must_not_be_negative():
    with pytest.raises(ValueError, match="snapshot_every"):
        TrainConfig(snapshot_every=-1).validate()
