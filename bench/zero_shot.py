"""Zero-shot classification by the CFG model against K, beside the evaluation and the noisy classifier.

Usage (one thread, as measured in docs/zero_shot.md):
  OMP_NUM_THREADS=1 python bench/zero_shot.py [--n-per-class 100] [--k 4,16,64] [--elbo-k 4,16] [--out docs/zero_shot]

Takes the first ``--n-per-class`` digits of each class from the MNIST test set (1,000 by default; needs MNIST under
$MINICFG_DATA), writes them to runs/zero_shot/test_digits.npz (for `minicfg classify`), and classifies them with:
the shipped diffusion model, zero-shot (``minicfg.zero_shot``, weighting "training" at every ``--k`` and "elbo" at
every ``--elbo-k``, seed 0); the shipped evaluation classifier on the clean digits; the shipped noisy classifier of
classifier guidance at lam = 20 (the data end) and lam = 4. Writes OUT/accuracy.csv (accuracy and wall time of
each), OUT/wrong_digits.png (the digits the zero-shot classifier gets wrong at the largest K, "true -> predicted")
and OUT/accuracy_vs_k.png.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from minicfg import data
from minicfg.checkpoint import load_model
from minicfg.diffusion import q_sample
from minicfg.evaluator import cpu_name, predict_logits
from minicfg.sample_files import to_uint8
from minicfg.zero_shot import classify

FIELDS = ["method", "weighting", "n_noise", "n_images", "correct", "accuracy", "seconds", "network_evaluations",
          "threads", "cpu"]


def first_per_class(n_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_per_class`` test digits of each class, in class order."""
    images, labels = data.load("mnist", train=False).tensors
    idx = torch.cat([torch.nonzero(labels == c)[:n_per_class, 0] for c in range(10)])
    return images[idx], labels[idx]


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), seconds it took)."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


@torch.inference_mode()
def noisy_logits(classifier, images, noise, lam_value: float, batch_size: int = 500) -> torch.Tensor:
    """The noisy classifier's logits of ``z = alpha x + sigma eps`` at one log-SNR."""
    lam = torch.full((len(images),), lam_value)
    return torch.cat([classifier(q_sample(images[i:i + batch_size], lam[i:i + batch_size], noise[i:i + batch_size]),
                                 lam[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def wrong_digits_figure(images, labels, predicted, title: str, columns: int = 12):
    """The misclassified digits, each drawn at 2 x 2 screen pixels per image pixel, titled "true -> predicted"."""
    from matplotlib.figure import Figure

    wrong = torch.nonzero(predicted != labels)[:, 0]
    dpi, scale, cell_w, cell_h, head, margin = 100, 2, 80, 84, 30, 10
    side = scale * images.shape[-1]  # 56 pixels for a 28-pixel digit
    rows = max(1, -(-len(wrong) // columns))
    width, height = margin * 2 + columns * cell_w, head + rows * cell_h + margin
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fig.suptitle(title, fontsize=10, y=1 - 8 / height, va="top")
    for j, i in enumerate(wrong.tolist()):
        r, c = divmod(j, columns)
        left = margin + c * cell_w + (cell_w - side) / 2
        bottom = height - head - (r + 1) * cell_h + 4
        ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
        ax.imshow(images[i, 0].numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(f"{int(labels[i])} \u2192 {int(predicted[i])}", fontsize=10, pad=2)
        ax.axis("off")
    return fig


def accuracy_figure(rows: list[dict]):
    """Accuracy and wall time against K for each weighting, with the two trained classifiers as lines."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    acc_ax, time_ax = fig.subplots(1, 2)
    for weighting, marker in (("training", "o"), ("elbo", "s")):
        pts = [r for r in rows if r["method"] == "zero-shot" and r["weighting"] == weighting]
        if pts:
            ks = [r["n_noise"] for r in pts]
            acc_ax.plot(ks, [r["accuracy"] for r in pts], marker=marker, label=f"zero-shot CFG model, {weighting}")
            time_ax.plot(ks, [r["seconds"] for r in pts], marker=marker, label=f"zero-shot, {weighting}")
    styles = iter(["--", ":", "-."])
    for r in rows:
        if r["method"] != "zero-shot":
            style = next(styles)
            acc_ax.axhline(r["accuracy"], color="gray", linestyle=style, label=r["method"])
            time_ax.axhline(r["seconds"], color="gray", linestyle=style, label=r["method"])
    ks = sorted({r["n_noise"] for r in rows if r["method"] == "zero-shot"})
    for ax in (acc_ax, time_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("K, shared (lam, eps) draws per digit")
        ax.grid(alpha=0.3)
    acc_ax.set_ylabel("accuracy on the test digits")
    time_ax.set_ylabel("wall time for all digits (s, one thread)")
    time_ax.set_yscale("log")
    acc_ax.legend(fontsize=8, loc="lower right")
    time_ax.legend(fontsize=8, loc="upper left")
    n = rows[0]["n_images"]
    fig.suptitle(f"Classifying {n:,} MNIST test digits: the CFG model zero-shot vs trained classifiers")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--k", default="4,16,64", help="K values for the 'training' weighting")
    parser.add_argument("--elbo-k", default="4,16", help="K values for the 'elbo' weighting ('' for none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/zero_shot")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = first_per_class(args.n_per_class)
    n = len(labels)
    npz = Path("runs/zero_shot/test_digits.npz")
    npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(npz, images=to_uint8(images), labels=labels.numpy())
    common = {"n_images": n, "threads": torch.get_num_threads(), "cpu": cpu_name()}
    rows = []

    def add(method, weighting, k, predicted, seconds, evaluations):
        correct = int((predicted == labels).sum())
        rows.append({"method": method, "weighting": weighting, "n_noise": k, "correct": correct,
                     "accuracy": round(correct / n, 4), "seconds": round(seconds, 2),
                     "network_evaluations": evaluations, **common})
        print(f"{method:<32} {weighting:<9} K={k!s:<4} accuracy {correct / n:.3f}  {seconds:7.1f} s", flush=True)

    evaluator, _ = load_model(role="evaluator")
    logits, seconds = timed(predict_logits, evaluator, images)
    add("evaluation classifier (clean)", "", "", logits.argmax(1), seconds, n)
    noisy, _ = load_model(role="noisy_classifier")
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(args.seed))
    for lam_value in (20.0, 4.0):
        logits, seconds = timed(noisy_logits, noisy, images, noise, lam_value)
        add(f"noisy classifier at lam = {lam_value:g}", "", "", logits.argmax(1), seconds, n)

    model, _ = load_model()
    worst = None
    runs = [("training", int(k)) for k in args.k.split(",") if k] + [("elbo", int(k)) for k in args.elbo_k.split(",")
                                                                      if k]
    for weighting, k in runs:
        (predicted, _), seconds = timed(classify, model, images, n_noise=k, seed=args.seed, weighting=weighting,
                                        progress=True)
        add("zero-shot", weighting, k, predicted, seconds, n * 10 * k)
        if weighting == "training":
            worst = (k, predicted)
        with (out / "accuracy.csv").open("w", newline="") as f:  # rewritten after every run: a partial table survives
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    k, predicted = worst
    wrong = int((predicted != labels).sum())
    fig = wrong_digits_figure(images, labels, predicted, f"The {wrong} of {n:,} test digits the CFG model gets wrong "
                              f"zero-shot (K = {k}, weighting 'training'): true \u2192 predicted")
    fig.savefig(out / "wrong_digits.png", dpi=fig.dpi)
    accuracy_figure(rows).savefig(out / "accuracy_vs_k.png")
    print(f"wrote {out / 'accuracy.csv'}, {out / 'wrong_digits.png'}, {out / 'accuracy_vs_k.png'} and {npz}")


if __name__ == "__main__":
    main()
