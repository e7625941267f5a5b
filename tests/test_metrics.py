"""Offline metrics: the Frechet distance against closed forms, and every metric on real and degraded digits.

The digit tests split the 10,000 MNIST test digits into 2,000 "samples" and 8,000 reference digits, so a
real set is never compared with itself (the evaluator was trained on the training digits: both halves are
held out). Margins, set from the values measured with the shipped evaluator (in brackets; docs/metrics.md):
real digits score accuracy >= 0.99 [0.9955], classifier FID < 3 [1.6], IS > 9.5 [9.86], precision and
recall > 0.8 [0.90, 0.90]. Blurred digits (Gaussian, sigma 1.5 px) [418], Gaussian noise [2061] and one
digit repeated [1031] each have a classifier FID over 50x that of the real digits; blurred digits lose
recall (< 0.2 [0.0005]); noise has precision < 0.05 [0.0] and accuracy < 0.3 [0.09]; the repeated digit
has recall < 0.01 [0.0], IS < 1.01 [1.0] and, being a real digit, precision > 0.9 [1.0].
"""

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from minicfg import cli
from minicfg.checkpoint import CheckpointError, load_model, save_tensors, shipped_weights
from minicfg.evaluator import load_evaluator
from minicfg.metrics import (
    Reference,
    as_images,
    evaluate,
    frechet_distance,
    gaussian_stats,
    inception_score,
    label_accuracy,
    load_reference,
    load_samples,
    precision_recall,
)

N_SAMPLE = 2000
SHIPPED_EVALUATOR = shipped_weights("mnist", "evaluator")


# -- Frechet distance against closed forms --------------------------------------------------------
def test_frechet_commuting_diagonal_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3.0, 8), rng.uniform(0.1, 3.0, 8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    # diagonal covariances commute: tr sqrt(C1 C2) = sum sqrt(a b), so the distance is |dmu|^2 + sum (sqrt a - sqrt b)^2
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0, rel=1e-12)


def test_frechet_random_pair_matches_trace_formula():
    """Against an independent route: the eigenvalues of the non-symmetric C1 C2 (real and >= 0 for SPD C1, C2)."""
    rng = np.random.default_rng(1)
    d = 12
    A, B = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    c1, c2 = A @ A.T + 0.05 * np.eye(d), B @ B.T / d + 0.05 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    ev = np.linalg.eigvals(c1 @ c2)
    assert np.abs(ev.imag).max() < 1e-8 * np.abs(ev).max()
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.sqrt(ev.real).sum()
    got = frechet_distance(mu1, c1, mu2, c2)
    assert got == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(got, rel=1e-9)  # symmetric
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)
    # a rank-deficient covariance (fewer samples than dimensions) stays finite and non-negative
    x = rng.normal(size=(5, d))
    m, c = gaussian_stats(x)
    assert 0.0 <= frechet_distance(m, c, mu1, c1) < np.inf


def test_frechet_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2))


# -- softmax metrics and precision/recall on synthetic data ---------------------------------------
def test_inception_score_and_accuracy_closed_forms():
    onehot = np.eye(10)[np.arange(1000) % 10]
    assert inception_score(onehot) == pytest.approx(10.0)
    assert inception_score(onehot, splits=10) == pytest.approx(10.0)
    assert inception_score(np.tile(np.eye(10)[3], (50, 1))) == pytest.approx(1.0)
    assert inception_score(np.full((20, 10), 0.1)) == pytest.approx(1.0)
    # two classes used evenly, each sample confident: IS = 2
    assert inception_score(np.eye(10)[np.arange(100) % 2]) == pytest.approx(2.0)
    assert label_accuracy(onehot, np.arange(1000) % 10) == 1.0
    assert label_accuracy(onehot, (np.arange(1000) + 1) % 10) == 0.0
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.ones((4, 10)))


def test_precision_recall_synthetic():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(1000, 8, generator=g)
    same = torch.randn(1000, 8, generator=g)
    p, r = precision_recall(real, same, k=3, chunk=256)
    assert p > 0.7 and r > 0.7
    p, r = precision_recall(real, same + 10.0, k=3)
    assert p == 0.0 and r == 0.0
    collapsed = torch.zeros(1000, 8) + 0.01 * torch.randn(1000, 8, generator=g)  # all at the mode
    p, r = precision_recall(real, collapsed, k=3)
    assert p == 1.0 and r < 0.05
    with pytest.raises(ValueError, match="more than k"):
        precision_recall(real[:3], same[:3], k=3)


def test_as_images_conventions():
    u8 = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    u8[0, 0, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)
    x = as_images(u8)
    assert x.dtype == torch.float32 and x.min() == -1.0 and x.max() == 1.0
    torch.testing.assert_close(as_images(x), x)
    torch.testing.assert_close(as_images(u8.numpy()[:, 0]), x)  # (N, 28, 28) numpy
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        as_images(u8.float())  # floats in 0..255
    with pytest.raises(ValueError, match="shape"):
        as_images(torch.zeros(2, 3, 32, 32))


# -- the shipped evaluator on real and degraded digits --------------------------------------------
@pytest.fixture(scope="module")
def test_set(mnist_test):
    """The test digits, their features under the shipped evaluator (the 'test' reference) and softmax."""
    model, meta = load_evaluator()
    images, labels = mnist_test.tensors
    feats = load_reference("test", model).features
    with torch.inference_mode():
        probs = torch.softmax(model.head(feats).double(), dim=1)
    return model, meta, images, labels, feats, probs


@pytest.fixture(scope="module")
def split(test_set):
    """2,000 test digits as samples; the other 8,000 as the reference."""
    model, _, images, labels, feats, _ = test_set
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    a, b = perm[:N_SAMPLE], perm[N_SAMPLE:]
    return model, images[a], labels[a], Reference.from_features("test[8000]", feats[b])


@pytest.fixture(scope="module")
def real_scores(split):
    model, x, y, ref = split
    return evaluate(x, y, reference=ref, evaluator=model)


def test_shipped_evaluator_accuracy(test_set):
    _, meta, _, labels, _, probs = test_set
    acc = label_accuracy(probs, labels)
    assert acc >= 0.993
    assert meta["test_accuracy"] == pytest.approx(acc, abs=5e-4)  # the recorded figure is reproduced
    shipped = json.loads(SHIPPED_EVALUATOR.with_suffix(".json").read_text())
    assert shipped["command"].startswith(("minicfg train-evaluator", "OMP_NUM_THREADS="))
    assert shipped["wall_time_s"] > 0 and "CPU" in shipped["machine"]
    assert SHIPPED_EVALUATOR.stat().st_size < 2_000_000


def test_real_digits_score_near_perfect(real_scores):
    s = real_scores
    assert s["n"] == N_SAMPLE and s["n_reference"] == 10_000 - N_SAMPLE
    assert s["accuracy"] >= 0.99
    assert s["fid"] < 3.0
    assert s["inception_score"] > 9.5
    assert s["precision"] > 0.8 and s["recall"] > 0.8


def _blur(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.conv2d(F.pad(x + 1, (3, 3, 3, 3)), k.view(1, 1, 1, 7))
    return F.conv2d(y, k.view(1, 1, 7, 1)) - 1


def test_degraded_digits_score_clearly_worse(split, real_scores):
    model, x, y, ref = split
    blurred = evaluate(_blur(x), y, reference=ref, evaluator=model)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    noisy = evaluate(noise, y, reference=ref, evaluator=model)
    single = evaluate(x[:1].expand(N_SAMPLE, -1, -1, -1), y[:1].expand(N_SAMPLE), reference=ref, evaluator=model)
    floor = real_scores["fid"]
    for s in (blurred, noisy, single):
        assert s["fid"] > 50 * floor
    assert blurred["fid"] < noisy["fid"]
    assert blurred["recall"] < 0.2
    assert noisy["accuracy"] < 0.3 and noisy["precision"] < 0.05
    assert single["recall"] < 0.01 and single["inception_score"] < 1.01 and single["precision"] > 0.9


def test_classifier_fid_floor_shrinks_with_n(split, real_scores):
    """FID is biased upwards for small sets: 200 real digits score clearly worse [16.0] than 2,000 [1.6]."""
    model, x, y, ref = split
    small = evaluate(x[:200], y[:200], reference=ref, evaluator=model)
    assert small["fid"] > 3 * real_scores["fid"]
    assert small["accuracy"] >= 0.98


def test_load_evaluator_rejects_other_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file" * 20)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_evaluator(junk)
    other = tmp_path / "other.safetensors"
    save_tensors(other, {"w": torch.zeros(2)}, {"model": {"arch": "unet"}})
    with pytest.raises(CheckpointError, match="not of a 'evaluator'"):
        load_evaluator(other)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_evaluator(tmp_path / "missing.safetensors")


# -- the command line -----------------------------------------------------------------------------
def _write_npz(path, images, labels, w, **extra):
    np.savez_compressed(path, images=images, labels=labels, w=w, **extra)
    return path


def test_cli_evaluate_real_digits(tmp_path, mnist_test, test_set, capsys):
    images, labels = mnist_test.tensors
    x = ((images[:300] + 1) * 127.5).round().to(torch.uint8).numpy()
    y = labels[:300].numpy()
    path = _write_npz(tmp_path / "s.npz", np.concatenate([x, x[::-1]]), np.concatenate([y, y[::-1]]),
                      np.repeat(np.array([1.0, 0.0], dtype=np.float32), 300))
    assert cli.main(["evaluate", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split() == ["w", "n", "accuracy", "cFID", "IS", "precision", "recall"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["0", "1"] and [r[1] for r in rows] == ["300", "300"]
    for r in rows:
        assert float(r[2]) >= 0.99 and float(r[4]) > 9.0


def _write_npy(path, array):
    with open(path, "wb") as f:  # np.save(path) would append .npy to the name
        np.save(f, array)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: np.savez(p, labels=np.zeros(4, np.int64), w=np.zeros(4, np.float32)), "lacks images"),
        (lambda p: np.savez(p, images=np.zeros((4, 1, 28, 28), np.uint8), labels=np.zeros(4, np.int64)), "lacks w"),
        (lambda p: _write_npz(p, np.zeros((4, 1, 28, 28), np.float32), np.zeros(4, np.int64), np.zeros(4, np.float32)),
         "images must be uint8"),
        (lambda p: _write_npz(p, np.zeros((4, 3, 32, 32), np.uint8), np.zeros(4, np.int64), np.zeros(4, np.float32)),
         "shape"),
        (lambda p: _write_npz(p, np.zeros((4, 1, 28, 28), np.uint8), np.zeros(3, np.int64), np.zeros(4, np.float32)),
         "labels must be"),
        (lambda p: p.write_bytes(b"PK\x03\x04 definitely not a zip archive"), "not a readable .npz"),
        (lambda p: p.write_bytes(b"just some text"), "not a readable .npz"),
        (lambda p: _write_npy(p, np.zeros((4, 1, 28, 28), np.uint8)), "single array"),
    ],
)
def test_cli_evaluate_bad_file(tmp_path, capsys, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match=message):
        load_samples(path)


def test_the_evaluator_trains_through_the_trainer(tmp_path, mnist_small):
    """`minicfg train-evaluator` is the common Trainer under the preset "evaluator": EMA weights that the model
    store loads as an evaluator, with the measured test accuracy beside them."""
    from minicfg.train import recipe_from, train

    recipe = recipe_from("evaluator", train_steps=80, batch_size=64, warmup_steps=10, sample_every_s=1e9)
    trainer = train(recipe, tmp_path / "ev", progress=False, data=mnist_small)
    model, meta = load_evaluator(tmp_path / "ev" / "ema.safetensors")
    assert meta["train"]["objective"] == "evaluator" and meta["step"] == 80 == trainer.step
    assert meta["test_accuracy"] > 0.85  # 80 steps on 1,024 digits; a model that learnt nothing scores 0.1
    assert json.loads((tmp_path / "ev" / "ema.json").read_text())["test_accuracy"] == meta["test_accuracy"]
    with pytest.raises(CheckpointError, match="not of a 'model'"):
        load_model(tmp_path / "ev" / "ema.safetensors")
