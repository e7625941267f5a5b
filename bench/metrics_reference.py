"""Reference figures of the offline metrics (docs/metrics.md): real digits (the floor) and degraded digits.

Every row is ``minicfg.metrics.evaluate`` with the shipped evaluator against the default reference (the
10,000 MNIST test digits), except the "held-out" rows, which compare test digits with the *other* half of
the test set so that no digit is compared with itself. Mean and spread over --repeats random subsets.

Usage: MINICFG_DATA=... OMP_NUM_THREADS=1 python bench/metrics_reference.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

from minicfg import data
from minicfg.evaluator import load_evaluator
from minicfg.metrics import Reference, evaluate, load_reference

KEYS = ("accuracy", "fid", "inception_score", "precision", "recall")


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (7 taps) of images in [-1, 1]; the background stays -1."""
    t = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.conv2d(F.pad(x + 1, (3, 3, 3, 3)), k.view(1, 1, 1, 7))
    return F.conv2d(y, k.view(1, 1, 7, 1)) - 1


def row(name: str, results: list[dict]) -> str:
    cells = []
    for key in KEYS:
        v = np.array([r[key] for r in results], dtype=np.float64)
        fmt = ".4f" if key == "accuracy" else ".3f" if key != "inception_score" else ".2f"
        cells.append(f"{v.mean():{fmt}}" + (f" ± {v.std(ddof=1):{fmt}}" if len(v) > 1 else ""))
    return f"| {name} | {results[0]['n']} | {results[0]['n_reference']} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="random subsets per row (default 3)")
    args = parser.parse_args()
    model, meta = load_evaluator()
    print(f"evaluator: test accuracy {meta['test_accuracy']:.4f}; trained by `{meta['command']}`")
    train_x, train_y = data.mnist(train=True).tensors
    test_x, test_y = data.mnist(train=False).tensors
    t = time.perf_counter()
    ref = load_reference("test", model)
    print(f"reference features of the 10,000 test digits: {time.perf_counter() - t:.1f} s")

    def draw(x, y, n, seed):
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
        return x[idx], y[idx]

    seeds = range(args.repeats)
    print("| set | N | reference N | accuracy | classifier FID | IS | precision | recall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in (1000, 5000):
        t = time.perf_counter()
        res = [evaluate(*draw(train_x, train_y, n, s), reference=ref, evaluator=model, seed=s) for s in seeds]
        print(row("real training digits (seen by the evaluator)", res) + f" <!-- {time.perf_counter() - t:.1f} s -->")
    halves = []
    for s in seeds:
        perm = torch.randperm(len(test_y), generator=torch.Generator().manual_seed(100 + s))
        a, b = perm[:5000], perm[5000:]
        halves.append((a, Reference.from_features("test half B", ref.features[b])))
    for n in (1000, 5000):
        res = [evaluate(test_x[a[:n]], test_y[a[:n]], reference=rb, evaluator=model, seed=s)
               for s, (a, rb) in enumerate(halves)]
        print(row("real test digits, half A vs half B (held out)", res))
    n = 1000
    degraded = {
        "blurred digits (Gaussian sigma 1.0 px)": lambda x, y, s: (blur(x, 1.0), y),
        "blurred digits (Gaussian sigma 1.5 px)": lambda x, y, s: (blur(x, 1.5), y),
        "digits + Gaussian noise (std 0.3), clipped": lambda x, y, s: (
            (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(s))).clamp(-1, 1), y),
        "pure Gaussian noise, clipped": lambda x, y, s: (
            torch.randn(x.shape, generator=torch.Generator().manual_seed(s)).clamp(-1, 1), y),
        "one digit repeated N times": lambda x, y, s: (x[:1].expand(len(x), -1, -1, -1), y[:1].expand(len(y))),
        "only one class (N real 7s)": None,
    }
    sevens = train_x[train_y == 7], train_y[train_y == 7]
    for name, fn in degraded.items():
        if fn is None:
            res = [evaluate(*draw(*sevens, n, s), reference=ref, evaluator=model, seed=s) for s in seeds]
        else:
            res = [evaluate(*fn(*draw(train_x, train_y, n, s), s), reference=ref, evaluator=model, seed=s)
                   for s in seeds]
        print(row(name, res))


if __name__ == "__main__":
    main()
