"""Training: exact resume, survival of SIGKILL, refusal of NaN, and the checkpoint format."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from checkpoint_wait import wait_for_step

from minicfg.checkpoint import CheckpointError, load_model, load_tensors
from minicfg.train import TrainConfig, Trainer, train

TINY = {"channels": (8, 16), "emb_dim": 16, "groups": 4}


def _recipe(**kw):
    base = dict(train_steps=12, batch_size=32, warmup_steps=3, ema_decay=0.9, model=TINY, sample_every_s=1e9)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, mnist_small):
    whole = train(_recipe(), tmp_path / "whole", progress=False, data=mnist_small)

    first = Trainer(_recipe(), tmp_path / "split", data=mnist_small)
    first.run(progress=False, stop_after=5)
    assert first.step == 5 and not (tmp_path / "split" / "ema.safetensors").exists()
    resumed = train(_recipe(), tmp_path / "split", resume=True, progress=False, data=mnist_small)

    assert resumed.step == whole.step == 12
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after resume")
    for a, b in zip(whole.ema.module.parameters(), resumed.ema.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and the weights did change: training happened
    fresh = Trainer(_recipe(), tmp_path / "fresh", data=mnist_small)
    assert not torch.equal(next(fresh.model.parameters()), next(whole.model.parameters()))


def test_existing_run_needs_resume_and_matching_recipe(tmp_path, mnist_small):
    out = tmp_path / "run"
    Trainer(_recipe(), out, data=mnist_small).run(progress=False, stop_after=2)
    with pytest.raises(CheckpointError, match="--resume"):
        train(_recipe(), out, progress=False, data=mnist_small)
    with pytest.raises(CheckpointError, match="p_uncond"):
        train(_recipe(p_uncond=0.5), out, resume=True, progress=False, data=mnist_small)
    with pytest.raises(CheckpointError, match="does not exist"):
        train(_recipe(), tmp_path / "nothing", resume=True, progress=False, data=mnist_small)


def test_non_finite_loss_stops_without_writing_nan_weights(tmp_path, mnist_small):
    images, labels = mnist_small
    bad = images.clone()
    bad[:] = float("nan")
    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError, match="loss became nan"):
        train(_recipe(), out, progress=False, data=(bad, labels))
    assert not (out / "ema.safetensors").exists()


def test_training_lowers_the_loss(tmp_path, mnist_small):
    trainer = train(_recipe(train_steps=60, lr=3e-3), tmp_path / "run", progress=False, data=mnist_small)
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    assert rows, "no log rows"
    g = torch.Generator().manual_seed(123)
    from minicfg.diffusion import eps_loss

    x, y = mnist_small[0][:512], mnist_small[1][:512]
    untrained = Trainer(_recipe(), tmp_path / "u", data=mnist_small).model
    with torch.no_grad():
        before = eps_loss(untrained, x, y, 0.1, 10, generator=g).item()
        g.manual_seed(123)
        after = eps_loss(trainer.ema.module, x, y, 0.1, 10, generator=g).item()
    assert after < 0.8 * before


def test_ema_export_loads_as_a_model(tmp_path, mnist_small):
    train(_recipe(), tmp_path / "run", progress=False, data=mnist_small)
    model, meta = load_model(tmp_path / "run" / "ema.safetensors")
    assert meta["step"] == 12 and meta["train"]["p_uncond"] == 0.1
    assert (tmp_path / "run" / "ema.json").is_file()
    out = model(torch.randn(2, 1, 28, 28), torch.zeros(2), torch.tensor([3, 10]))
    assert out.shape == (2, 1, 28, 28)
    # a training folder loads its EMA weights, not the raw ones
    model2, _ = load_model(tmp_path / "run")
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sigkill_then_resume_continues(tmp_path):
    """On the MNIST subset shipped in the package (smoke mode, an empty data folder), so it runs everywhere."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "minicfg.cli", "train", "--preset", "smoke", "--train-steps", "100000",
           "--out", str(out), "--checkpoint-every", "0.5", "--no-progress", "--no-preview", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MINICFG_SMOKE="1", MINICFG_OFFLINE="1",
               MINICFG_DATA=str(tmp_path / "no-data"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoint.safetensors"
    step_at_kill = wait_for_step(proc, ckpt, 3, timeout=120, poll=0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert step_at_kill >= 3, proc.stderr.read().decode()[-2000:]
    _, meta = load_tensors(ckpt)  # still a valid file after the kill
    assert meta["step"] >= step_at_kill
    target = meta["step"] + 5
    cmd_resume = cmd[:]
    cmd_resume[cmd.index("100000")] = str(target)
    result = subprocess.run(cmd_resume + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    _, meta2 = load_tensors(ckpt)
    assert meta2["step"] == target and meta2["dataset"] == "mnist"
    assert "smoke mode uses the" in result.stdout  # it trained on the shipped subset
    assert Path(out / "ema.safetensors").is_file()


@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_power_ema_averages_a_fixed_fraction_of_the_run(fraction):
    """The EMA of the parameter sequence 1..N, divided by N, is 1 / (1 + fraction) at any N (the weights grow
    like k^gamma with gamma + 1 = 1 / fraction): the same share of the run, long or short."""
    from minicfg.train import _ema_fn

    avg = _ema_fn(0.999, fraction)
    for n_steps in (300, 3000):
        p = torch.tensor(1.0)
        for k in range(2, n_steps + 1):
            p = avg(p, torch.tensor(float(k)), k - 1)
        assert abs(p.item() / n_steps - 1 / (1 + fraction)) < 0.01
    with pytest.raises(ValueError, match="ema_fraction"):
        TrainConfig(ema_fraction=0.0).validate()


def _asymmetric_images(n, shape):
    """Images that differ from their mirror image, so a flip is visible."""
    g = torch.Generator().manual_seed(0)
    return torch.rand((n, *shape), generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("dataset, rate", [("cifar10", 0.5), ("mnist", 0.0)])
def test_flips_follow_the_data_set_record(tmp_path, dataset, rate):
    from minicfg.data import get_dataset

    record = get_dataset(dataset)
    assert record.hflip == (rate > 0)
    images, labels = _asymmetric_images(256, record.image_shape)
    trainer = Trainer(_recipe(dataset=dataset, batch_size=64, channels_last=False), tmp_path, data=(images, labels))
    trainer._ensure_data()
    flipped = total = 0
    for step in range(16):  # four epochs of four batches
        x, y = trainer.batch(step)
        idx, flip = trainer.draw(step)
        assert torch.equal(y, labels[idx])
        assert torch.equal(x, torch.where(flip[:, None, None, None], images[idx].flip(-1), images[idx]))
        flipped, total = flipped + int(flip.sum()), total + len(idx)
    if rate == 0:
        assert flipped == 0
    else:  # 1,024 fair coin flips: 4 standard deviations are 64
        assert abs(flipped - rate * total) < 64
        # an image's flip is drawn anew every epoch (each epoch's 4 batches cover all 256 images once)
        by_image = []
        for epoch in range(2):
            idx, flip = map(torch.cat, zip(*(trainer.draw(4 * epoch + k) for k in range(4)), strict=True))
            by_image.append(flip[idx.argsort()])
        assert 64 < int((by_image[0] != by_image[1]).sum()) < 192


def test_resume_with_flips_reproduces_the_uninterrupted_run(tmp_path):
    data = _asymmetric_images(96, (3, 32, 32))
    recipe = dict(dataset="cifar10", train_steps=8, batch_size=32, model={"channels": (8, 16), "emb_dim": 16,
                                                                         "groups": 4})
    whole = train(_recipe(**recipe), tmp_path / "whole", progress=False, data=data)
    Trainer(_recipe(**recipe), tmp_path / "split", data=data).run(progress=False, stop_after=4)
    resumed = train(_recipe(**recipe), tmp_path / "split", resume=True, progress=False, data=data)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after resume")
    assert any(bool(whole.draw(s)[1].any()) for s in range(8))  # flips did happen in this run


def test_a_time_budget_does_not_time_the_slow_first_steps(tmp_path, monkeypatch):
    # steps that take 50 ms for the first five (kernels being built) and 10 ms after: a 1.2 s budget has room for
    # 5 slow steps and 65 fast ones; timing the first steps too would count 1.2 s / 20 ms = 60 steps
    trainer = Trainer(_recipe(train_steps=None, minutes=0.02), tmp_path)

    def fake_step():
        time.sleep(0.05 if trainer.step < 5 else 0.01)
        trainer.step += 1
        return 0.0

    monkeypatch.setattr(trainer, "train_step", fake_step)
    steps = trainer.calibrate_steps(0.02)
    assert 88 <= steps <= 101, steps


def test_compile_wraps_the_trained_network_and_not_its_emas(tmp_path, mnist_small, monkeypatch):
    calls = []

    def fake_compile(fn):  # torch.compile takes a minute; this records what is compiled and what is called
        def wrapped(*args, **kwargs):
            calls.append(fn.__name__)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(torch, "compile", fake_compile)
    trainer = train(_recipe(train_steps=3, compile=True), tmp_path, progress=False, data=mnist_small)
    assert calls == ["raw"] * 3  # one compiled call per training step
    assert trainer.ema.module.raw.__name__ == "raw" and "wrapped" not in repr(trainer.ema.module.raw)
    load_model(tmp_path / "ema.safetensors")  # the exported weights load as a plain network
