"""The command line: sampling with the shipped weights, one-line errors for bad options."""

import argparse
import subprocess
import sys
from pathlib import Path

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


def test_classifier_guidance_at_w0_is_the_base_model_without_guidance():
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


# -- CIFAR-10 through the commands, offline on the shipped weights and subset ----------------------------
@pytest.fixture
def subset_only(tmp_path, monkeypatch):
    """Smoke mode with an empty data folder: the metrics compare with the 500 shipped CIFAR-10 test images."""
    monkeypatch.setenv("MINICFG_SMOKE", "1")
    monkeypatch.setenv("MINICFG_OFFLINE", "1")
    monkeypatch.setenv("MINICFG_DATA", str(tmp_path / "no-data"))


@pytest.fixture(scope="module")
def cifar_npz(tmp_path_factory):
    """What `minicfg sample --dataset cifar10 --out FILE.npz` writes: 2 per class at w = 0 and 3 (10 steps)."""
    out = tmp_path_factory.mktemp("cifar") / "c.npz"
    assert cli.main(["sample", "--dataset", "cifar10", "--w", "0,3", "--n-per-class", "2", "--n-steps", "10",
                     "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    return out


def _older_file(path, tmp_path):
    """The same arrays without the data set's name, as `minicfg sample` wrote them before it recorded it."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in ("images", "labels", "w")}
    older = tmp_path / "older.npz"
    np.savez_compressed(older, **arrays)
    return older


def _table(text):
    """{w: (n, accuracy)} from the table `minicfg evaluate` prints."""
    rows = [line.split() for line in text.splitlines() if line.split() and line.split()[0][0] in "-0123456789."]
    return {float(r[0]): (int(r[1]), float(r[2])) for r in rows if len(r) >= 7}


def test_sample_records_its_data_set_and_evaluate_reads_it(cifar_npz, subset_only, capsys):
    with np.load(cifar_npz) as f:
        assert f["dataset"].item() == "cifar10" and f["images"].shape == (40, 3, 32, 32)
    assert cli.main(["evaluate", str(cifar_npz), "--device", "cpu"]) == 0  # no --dataset: the file says cifar10
    out = capsys.readouterr().out
    assert "smoke mode uses the 500 test images shipped in minicfg/subsets/cifar10.npz" in out
    assert "classifier metrics vs the cifar10 test set" in out
    table = _table(out)
    assert sorted(table) == [0.0, 3.0] and all(n == 20 for n, _ in table.values())
    assert table[3.0][1] >= 0.8  # guided samples recognised by the CIFAR-10 evaluator (chance is 0.10)


def test_evaluate_and_classify_refuse_a_data_set_the_file_contradicts(cifar_npz, capsys):
    for command in (["evaluate", str(cifar_npz)], ["classify", str(cifar_npz), "--no-progress"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*command, "--dataset", "mnist"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2
        assert (f"{cifar_npz} holds cifar10 images (recorded by `minicfg sample`), but --dataset mnist was given: "
                "leave out --dataset, or pass --dataset cifar10") in err


def test_an_older_file_without_its_data_set_needs_dataset(cifar_npz, subset_only, tmp_path, capsys):
    older = _older_file(cifar_npz, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", str(older)])  # read as MNIST, the default
    assert exit_info.value.code == 2 and "pass --dataset for another data set" in capsys.readouterr().err
    assert cli.main(["evaluate", str(older), "--dataset", "cifar10", "--device", "cpu"]) == 0
    assert _table(capsys.readouterr().out).keys() == {0.0, 3.0}


def _predictions(csv_path):
    import csv

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["predicted"]) for r in rows], np.array([[float(r[f"error_{c}"]) for c in range(10)] for r in rows])


def test_classify_cifar10_honours_dataset_weighting_and_checkpoint(cifar_npz, tmp_path, capsys, one_thread):
    """`minicfg classify` on CIFAR-10 samples: the file's data set or --dataset, --weighting and --checkpoint each
    reach the computation (compared with the zero-shot classifier called directly with the same settings)."""
    from minicfg.checkpoint import save_weights
    from minicfg.nets import build_model
    from minicfg.zero_shot import classify

    with np.load(cifar_npz) as f:  # the 10 samples at w = 3, one per class
        images, labels = f["images"][f["w"] == 3][::2], f["labels"][f["w"] == 3][::2]
    small = tmp_path / "small.npz"
    np.savez_compressed(small, images=images, labels=labels, w=np.full(10, 3.0, np.float32),
                        dataset=np.array("cifar10"))
    older = _older_file(small, tmp_path)
    shipped, _ = load_model(dataset="cifar10")
    runs = {}
    for name, args in (("recorded", [str(small)]), ("flag", [str(older), "--dataset", "cifar10"]),
                       ("elbo", [str(small), "--weighting", "elbo"])):
        out = tmp_path / f"{name}.csv"
        assert cli.main(["classify", *args, "--n-noise", "2", "--seed", "4", "--device", "cpu", "--no-progress",
                         "--out", str(out)]) == 0
        text = capsys.readouterr().out
        assert "10 images classified" in text and "airplane: " in text  # CIFAR-10's class names
        runs[name] = _predictions(out)
    for name, weighting in (("recorded", "training"), ("elbo", "elbo")):
        predicted, errors = classify(shipped, images, n_noise=2, seed=4, weighting=weighting)
        assert runs[name][0] == predicted.tolist()
        np.testing.assert_allclose(runs[name][1], errors.numpy(), rtol=1e-5)
    assert runs["flag"][0] == runs["recorded"][0]
    assert not np.allclose(runs["elbo"][1], runs["recorded"][1])  # the weighting changed the errors
    # another checkpoint of the same data set: a freshly initialised network of the shipped config
    torch.manual_seed(0)
    fresh = tmp_path / "fresh.safetensors"
    save_weights(fresh, build_model(shipped.config.to_dict()), {"dataset": "cifar10"})
    assert cli.main(["classify", str(small), "--checkpoint", str(fresh), "--n-noise", "2", "--seed", "4",
                     "--device", "cpu", "--no-progress", "--out", str(tmp_path / "fresh.csv")]) == 0
    fresh_errors = _predictions(tmp_path / "fresh.csv")[1]
    assert not np.allclose(fresh_errors, runs["recorded"][1])
    with pytest.raises(SystemExit) as exit_info:  # a checkpoint of another data set is refused
        cli.main(["classify", str(small), "--checkpoint", str(MNIST_WEIGHTS), "--no-progress"])
    assert exit_info.value.code == 2 and "trained on mnist, not on cifar10" in capsys.readouterr().err


def test_sweep_cifar10_end_to_end(subset_only, tmp_path):
    from minicfg.sweep import read_csv

    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--dataset", "cifar10", "--w", "0,3", "--n-per-class", "1", "--n-steps", "4",
                     "--device", "cpu", "--paper", "none", "--no-progress", "--out", str(out)]) == 0
    rows = read_csv(out / "sweep.csv")
    assert sorted(r["w"] for r in rows) == [0.0, 3.0]
    assert all(r["label"] == "shipped cifar10" and r["n"] == 10 and r["fid"] > 0 for r in rows)
    assert (out / "fid_vs_is.png").read_bytes()[:4] == b"\x89PNG"


# -- a checkpoint of another data set is refused, naming both ------------------------------------------
MNIST_WEIGHTS = Path(__file__).resolve().parents[1] / "minicfg" / "weights" / "mnist.safetensors"


@pytest.mark.parametrize("command", [["sample", "--out", "x.png"], ["sweep", "--out", "o"]])
def test_sample_and_sweep_refuse_a_checkpoint_of_another_data_set(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command[:-1], str(tmp_path / command[-1]), "--dataset", "cifar10", "--checkpoint",
                  str(MNIST_WEIGHTS), "--n-per-class", "1", "--no-progress"])
    assert exit_info.value.code == 2
    assert (f"{MNIST_WEIGHTS} holds a model trained on mnist, not on cifar10: pass --dataset mnist to use it, or a "
            "model trained on cifar10 (leave out --checkpoint for the shipped one)") in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_sample_without_dataset_takes_the_checkpoints_own(tmp_path):
    """`minicfg sample --checkpoint <a CIFAR-10 model>` with no --dataset samples CIFAR-10 images (3 x 32 x 32),
    and records cifar10 in its NPZ, instead of refusing the file for not being an MNIST model."""
    cifar = MNIST_WEIGHTS.with_name("cifar10.safetensors")
    out = tmp_path / "c.npz"
    assert cli.main(["sample", "--checkpoint", str(cifar), "--w", "0", "--n-per-class", "1", "--n-steps", "2",
                     "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    with np.load(out) as f:
        assert f["images"].shape == (10, 3, 32, 32) and str(f["dataset"]) == "cifar10"
