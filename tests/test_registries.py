"""The registries: a new sampler, guidance method or data set is one entry, and then the CLI, ``generate`` and the
trainer offer it. Each test follows the recipe of docs/architecture.md and removes its entry afterwards."""

import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from minicfg import cli, data, guidance, samplers, toy
from minicfg.checkpoint import load_model
from minicfg.diffusion import eps_from_x
from minicfg.generate import class_labels, generate
from minicfg.schedules import sampling_lams
from minicfg.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
DT = torch.float64


@pytest.fixture
def registered():
    """Remove whatever a test registers, so the registries are as shipped for the next test."""
    before = (dict(samplers.SAMPLERS), dict(guidance.GUIDANCE), dict(data.DATASETS))
    yield
    for registry, saved in zip((samplers.SAMPLERS, guidance.GUIDANCE, data.DATASETS), before, strict=True):
        registry.clear()
        registry.update(saved)


def _help(*command) -> str:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command[0]]
    return sub.format_help()


# -- samplers ------------------------------------------------------------------------------------
def test_a_registered_sampler_shows_in_the_cli_and_runs_in_generate(registered):
    calls = []

    @samplers.register_sampler("x_once")
    def x_once(eps_fn, z, lams, *, generator=None, callback=None, shrink: float = 1.0):
        """One network evaluation at the noise end, its x-prediction returned (a toy sampler)."""
        lam = torch.as_tensor(lams)[0].to(z.dtype)
        x = (z - (torch.sigmoid(-lam).sqrt()) * eps_fn(z, lam.expand(z.shape[0]))) / torch.sigmoid(lam).sqrt()
        calls.append(shrink)
        if callback is not None:
            callback(0, lam, z, x)
        return shrink * x

    assert "x_once" in _help("sample") and "x_once" in _help("sweep")
    model, _ = load_model()
    labels = class_labels(10, 1)
    a = generate(model, labels, 1.0, n_steps=3, sampler="x_once", seed=4)
    b = generate(model, labels, 1.0, n_steps=3, sampler="x_once", seed=4, shrink=0.5)
    assert calls == [1.0, 0.5] and a.shape == (10, 1, 28, 28)
    torch.testing.assert_close(b, 0.5 * a)
    with pytest.raises(ValueError, match="taken neither by guidance 'cfg'.*nor by sampler 'x_once'"):
        generate(model, labels, 1.0, n_steps=3, sampler="x_once", v=0.3)


def test_a_sampler_with_the_wrong_signature_is_refused(registered):
    with pytest.raises(ValueError, match="signature"):
        samplers.register_sampler("bad")(lambda eps_fn, z, lams, v=0.3: z)
    with pytest.raises(ValueError, match="already registered"):
        samplers.register_sampler("ddim")(samplers.ddim)


def test_run_sampler_names_the_options_a_sampler_takes():
    z = torch.zeros(2, 1, dtype=DT)
    with pytest.raises(ValueError, match="sampler 'ddim' does not take v; its options are clip_x"):
        samplers.run_sampler("ddim", toy.eps_fn(toy.three_gaussians()), z, sampling_lams(4, dtype=DT), v=0.3)
    with pytest.raises(ValueError, match="unknown sampler 'euler'; choose one of"):
        samplers.get_sampler("euler")


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_callback_sees_every_evaluation(name):
    """callback(step, lam, z, x_pred) at each lam of the grid but the last: the state the network saw there, and an
    x-prediction consistent with the eps it returned. A sampler of k evaluations per step (heun: k = 2) evaluates
    at the grid's lams and k - 1 times between them, where the callback is not called."""
    mix = toy.three_gaussians()
    seen = []

    def eps_fn(z, lam):
        eps = mix.eps(z, lam)
        seen.append((lam[0].item(), z.clone(), eps.clone()))
        return eps

    trace = []
    z0 = torch.randn(7, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    lams = sampling_lams(6, dtype=DT)
    out = samplers.run_sampler(name, eps_fn, z0, lams, generator=torch.Generator().manual_seed(1),
                               callback=lambda step, lam, z, x: trace.append((step, float(lam), z.clone(), x.clone())))
    assert [t[0] for t in trace] == list(range(6))
    assert [t[1] for t in trace] == pytest.approx(lams[:-1].tolist())
    assert torch.equal(trace[0][2], z0)
    k = 2 if name == "heun" else 1
    assert len(seen) == k * 5 + 1
    for (lam, z_seen, eps), (_, _, z, x) in zip(seen[::k], trace, strict=True):
        assert torch.equal(z_seen, z)
        torch.testing.assert_close(eps_from_x(z, torch.full((7,), lam, dtype=DT), x), eps)
    assert torch.equal(trace[-1][3], out)


# -- guidance ------------------------------------------------------------------------------------
def test_a_registered_guidance_method_shows_in_the_cli_and_runs_in_generate(registered):
    @guidance.register_guidance("cond_only")
    def cond_only(model, labels, w, *, scale: float = 1.0):
        """The conditional model alone, its eps scaled (a toy guidance method)."""
        plain = guidance.cfg_eps_fn(model, labels, 0.0)
        return lambda z, lam: scale * plain(z, lam)

    text = _help("sample")
    assert "cond_only" in text and "--scale" in text
    model, _ = load_model()
    labels = class_labels(10, 1)
    kw = dict(n_steps=4, sampler="ddim", seed=2)
    torch.testing.assert_close(generate(model, labels, 3.0, guidance="cond_only", **kw),
                               generate(model, labels, 0.0, **kw))
    with pytest.raises(ValueError, match="taken neither by guidance 'cond_only'"):
        generate(model, labels, 0.0, guidance="cond_only", base="cond", **kw)
    with pytest.raises(ValueError, match="signature"):
        guidance.register_guidance("bad")(lambda model, w: None)


def test_w_as_a_function_of_lam():
    """w(lam) constant equals the number; an interval that covers no lam of the grid is the conditional model."""
    mix = toy.three_gaussians(dtype=DT)
    labels = torch.tensor([0, 1, 2, 1])
    z = torch.randn(4, 2, dtype=DT, generator=torch.Generator().manual_seed(3))
    lam = torch.full((4,), -1.5, dtype=DT)
    const = guidance.cfg_eps_fn(mix, labels, lambda lam: 2.0)(z, lam)
    torch.testing.assert_close(const, guidance.cfg_eps_fn(mix, labels, 2.0)(z, lam))
    per_sample = guidance.cfg_eps_fn(mix, labels, lambda lam: torch.where(lam > 0, 3.0, 0.0).to(lam))
    torch.testing.assert_close(per_sample(z, lam), guidance.cfg_eps_fn(mix, labels, 0.0)(z, lam))
    torch.testing.assert_close(per_sample(z, -lam), guidance.cfg_eps_fn(mix, labels, 3.0)(z, -lam))
    with pytest.raises(ValueError, match="outside"):
        guidance.cfg_eps_fn(mix, labels, lambda lam: 500.0)(z, lam)


def test_build_guidance_rejects_unknown_names_and_options():
    mix = toy.three_gaussians(dtype=DT)
    with pytest.raises(ValueError, match="unknown guidance method 'schedule'; choose one of"):
        guidance.build_guidance("schedule", mix, torch.tensor([0]), 1.0)
    with pytest.raises(ValueError, match="guidance 'cfg' does not take base"):
        guidance.build_guidance("cfg", mix, torch.tensor([0]), 1.0, base="cond")


# -- data sets -----------------------------------------------------------------------------------
def _toy_reader(root, train, download):
    g = torch.Generator().manual_seed(0 if train else 1)
    labels = torch.arange(300 if train else 60) % 3
    images = (labels.view(-1, 1, 1, 1).float() - 1) * 0.5 + 0.1 * torch.randn(len(labels), 2, 8, 8, generator=g)
    return TensorDataset(images.clamp(-1, 1), labels)


def test_a_registered_dataset_trains_and_samples(registered, tmp_path):
    data.register_dataset(data.Dataset(name="blobs", image_shape=(2, 8, 8), num_classes=3, reader=_toy_reader,
                                       looked_for="nothing (made in memory)", class_names=("a", "b", "c")))
    assert "blobs" in _help("train") and "blobs" in _help("sample")
    assert data.load("blobs", train=False).tensors[0].shape == (60, 2, 8, 8)
    recipe = TrainConfig(dataset="blobs", train_steps=4, batch_size=16, warmup_steps=1,
                         model={"channels": (8, 16), "emb_dim": 16, "groups": 4})
    trainer = Trainer(recipe, tmp_path / "run")
    trainer.run(progress=False)
    model, _ = load_model(tmp_path / "run" / "ema.safetensors")
    assert (model.config.image_channels, model.config.image_size, model.config.num_classes) == (2, 8, 3)
    x = generate(model, class_labels(3, 2), 1.0, n_steps=3)
    assert x.shape == (6, 2, 8, 8)
    with pytest.raises(ValueError, match="already registered"):
        data.register_dataset(data.get_dataset("blobs"))
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        data.get_dataset("svhn")


# -- one home per name ---------------------------------------------------------------------------
def test_no_sampler_or_guidance_name_is_spelled_outside_its_registry():
    names = set(samplers.SAMPLERS) | set(guidance.GUIDANCE)
    homes = {ROOT / "minicfg" / name for name in ("samplers.py", "guidance.py", "guidance_formulas.py",
                                                   "guidance_variants.py", "guidance_frontier.py", "distill.py")}
    pattern = re.compile("|".join(rf"[\"']{re.escape(n)}[\"']" for n in names))
    found = []
    for path in sorted((ROOT / "minicfg").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py")):
        if path in homes:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "names spelled as strings outside their registry:\n" + "\n".join(found)
