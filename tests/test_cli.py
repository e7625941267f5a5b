"""The command line: sampling with the shipped weights, one-line errors for bad options."""

import argparse
import subprocess
import sys

import numpy as np
import pytest
import torch

from minicfg import cli
from minicfg.checkpoint import load_model
from minicfg.generate import class_labels, generate
from minicfg.nets import NoisyClassifier, NoisyClassifierConfig


def _run(*args):
    return subprocess.run([sys.executable, "-m", "minicfg.cli", *args], capture_output=True, text=True, timeout=300)


def test_sample_npz_with_the_shipped_weights(tmp_path):
    out = tmp_path / "s.npz"
    assert cli.main(["sample", "--w", "0,2", "--n-per-class", "2", "--n-steps", "6", "--out", str(out),
                     "--no-progress"]) == 0
    data = np.load(out)
    assert data["images"].dtype == np.uint8 and data["images"].shape == (40, 1, 28, 28)
    assert data["labels"].dtype == np.int64 and data["labels"].tolist() == class_labels(10, 2).tolist() * 2
    assert data["w"].dtype == np.float32 and sorted(set(data["w"].tolist())) == [0.0, 2.0]
    # real images, not a constant: the model draws digits with black background and white strokes
    assert data["images"].std() > 30 and np.median(data["images"]) < 40


def test_sample_png_grid(tmp_path):
    out = tmp_path / "grid.png"
    assert cli.main(["sample", "--w", "1", "--n-per-class", "1", "--n-steps", "3", "--sampler", "ddim",
                     "--out", str(out), "--no-progress"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "--w", "0,nan", "--out", "x.png"], "finite"),
        (["sample", "--w", "500", "--out", "x.png"], "outside [-1, 100]"),
        (["sample", "--n-steps", "0", "--out", "x.png"], "positive integer"),
        (["sample", "--out", "x.jpg"], "must end in .png"),
        (["sample", "--checkpoint", "/nonexistent/ckpt.safetensors", "--out", "x.png"], "no checkpoint at"),
        (["train", "--out", "o", "--p-uncond", "1.5"], "probability in [0, 1]"),
        (["train", "--out", "o", "--minutes", "-3"], "positive number"),
        (["train", "--out", "o", "--objective", "x0"], "invalid choice: 'x0'"),
    ],
)
def test_bad_values_get_a_one_line_error(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "minicfg.cli", *args], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert message in last and "Traceback" not in result.stderr


def _commands() -> list[str]:
    """The subcommands the parser defines, read from it, so that a new command is covered automatically."""
    (sub,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_every_command_has_help(capsys):
    commands = _commands()
    assert {"download", "train", "train-classifier", "sample", "evaluate", "train-evaluator", "sweep"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and out.startswith(f"usage: minicfg {command}"), command
    # the installed entry point: its top-level help lists every command
    result = _run("--help")
    assert result.returncode == 0 and "usage: minicfg" in result.stdout
    assert all(command in result.stdout for command in commands)


def test_classifier_guidance_at_w0_is_the_unguided_model():
    model, _ = load_model()
    torch.manual_seed(0)
    clf = NoisyClassifier(NoisyClassifierConfig(channels=(8, 16), emb_dim=16, groups=4))
    labels = torch.tensor([3, 7])
    kw = dict(n_steps=4, sampler="ddim", seed=5)
    plain = generate(model, labels, 0.0, **kw)
    guided0 = generate(model, labels, 0.0, guidance="classifier", classifier=clf, base="cond", **kw)
    torch.testing.assert_close(plain, guided0)
    uncond = generate(model, labels, -1.0, **kw)
    torch.testing.assert_close(uncond, generate(model, labels, 0.0, guidance="classifier", classifier=clf, **kw))
    guided = generate(model, labels, 3.0, guidance="classifier", classifier=clf, **kw)
    assert not torch.allclose(guided, uncond)
    with pytest.raises(ValueError, match="needs a noisy classifier"):
        generate(model, labels, 1.0, guidance="classifier", **kw)


def test_train_objective_and_weighting_reach_the_recipe(tmp_path, monkeypatch):
    seen = {}
    import minicfg.train as T

    def fake_train(recipe, out, **kw):
        seen["recipe"] = recipe
        return type("Done", (), {"step": 0, "rank": 0, "world": 1, "device": "cpu"})()

    monkeypatch.setattr(T, "train", fake_train)
    cli.main(["train", "--out", str(tmp_path / "r"), "--objective", "eps", "--weighting", "min_snr",
              "--lam-density", "lognormal", "--train-steps", "5", "--no-progress"])
    r = seen["recipe"]
    assert (r.objective, r.weighting, r.density, r.train_steps) == ("eps", "min_snr", "lognormal", 5)
