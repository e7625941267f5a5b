"""Time to quality: train the default recipe from scratch, then measure its samples at several w.

Usage: python bench/time_to_quality.py [--out runs/ttq] [--n-samples 5000] [--n-steps 50] [--w 0,0.1,0.3,1,2]
                                      [--snapshot-every 500] [--set bf16=true ...]
       python bench/time_to_quality.py --checkpoint minicfg/weights/mnist.safetensors   # skip training
       python bench/time_to_quality.py --curve runs/ttq --every 1000 --n-samples 1000 --figure F.png --csv F.csv
Prints the training wall time, the metrics of as many real training digits (the floor a perfect generator
reaches), then for each w: label accuracy, classifier FID, IS, precision and recall, all against the 10,000
test digits. The rows are kept in OUT/sweep.csv (`minicfg.sweep`), so an interrupted run resumes.

With ``--curve RUN`` nothing is trained: every snapshot of RUN (a run trained with ``--snapshot-every``) whose step
is a multiple of ``--every`` is measured the same way, and the time-to-quality curve (accuracy at w = 0 and the
best classifier FID over the w's, against the training minutes the snapshot's metadata records) is written as a
CSV and a figure. Needs MNIST under $MINICFG_DATA.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from recipe_ablation import parse_sets  # bench/, beside this script

from minicfg.checkpoint import load_model
from minicfg.data import mnist
from minicfg.evaluator import cpu_name
from minicfg.metrics import evaluate, format_table
from minicfg.posthoc_ema import snapshots
from minicfg.sweep import best_row, sweep, write_csv
from minicfg.train import recipe_from, train

AIMS = {"accuracy_w0": 0.97, "minutes": 10.0}  # issue 32's aims for the MNIST default recipe (the cFID one: at 5,000)


def real_floor(n: int) -> dict:
    """Metrics of n real training digits against the test digits: the floor a perfect generator reaches."""
    real = mnist(train=True).tensors[0]  # not the test digits: the reference must not contain them
    floor = evaluate(real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:n]])
    floor["w"] = float("nan")  # the row of real digits
    return floor


def curve(run, ws: list[float], n: int, n_steps: int, every: int, floor: dict) -> list[dict]:
    """Measure every snapshot of ``run`` at a step that is a multiple of ``every``; one row per snapshot."""
    rows = []
    for step, path in snapshots(run):
        if step % every:
            continue
        model, meta = load_model(path)
        points = sweep(model, ws, n_per_class=n // 10, n_steps=n_steps, label=str(path), meta=meta,
                       csv_path=Path(run) / "curve_sweep.csv", progress=False)
        best = best_row(points)
        unguided = next(p for p in points if p["w"] == 0.0)
        rows.append({"step": step, "minutes": round(meta["elapsed_s"] / 60, 2), "accuracy_w0": unguided["accuracy"],
                     "fid_w0": round(unguided["fid"], 3), "best_w": best["w"], "best_fid": round(best["fid"], 3),
                     "real_fid": round(floor["fid"], 3), "best_fid_over_real": round(best["fid"] / floor["fid"], 3),
                     "accuracy_best_w": best["accuracy"],
                     "n": n, "cpu": cpu_name()})
    return rows


def curve_figure(rows: list[dict], floor: dict, title: str, path) -> None:
    """Two panels against training minutes: accuracy at w = 0, and the classifier FID at w = 0 and at the best w
    beside that of as many real digits (no ratio aim drawn: the ratio to real depends on the sample count)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["minutes"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    left.plot(minutes, [100 * r["accuracy_w0"] for r in rows], "o-", color="C0", label="w = 0")
    left.axhline(100 * AIMS["accuracy_w0"], color="0.4", ls="--", lw=1, label="aim 97%")
    left.set_ylabel("recognised by the evaluator (%)")
    right.plot(minutes, [r["best_fid"] for r in rows], "o-", color="C3", label="best w")
    right.plot(minutes, [r["fid_w0"] for r in rows], "s--", color="C1", ms=4, label="w = 0")
    for r in rows:
        right.annotate(f"w={r['best_w']:g}", (r["minutes"], r["best_fid"]), textcoords="offset points",
                       xytext=(0, -13), ha="center", fontsize=8)
    # a finite sample's classifier FID is biased upwards, the more the fewer samples: real digits at the same n
    right.axhline(floor["fid"], color="0.4", ls="--", lw=1, label=f"real digits, same n ({floor['fid']:.2f})")
    right.set_ylabel("classifier FID")
    right.set_yscale("log")
    right.yaxis.set_major_locator(matplotlib.ticker.FixedLocator([1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 70, 100]))
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (left, right):
        ax.axvline(AIMS["minutes"], color="0.6", ls=":", lw=1, label="10 minutes")
        ax.set_xlabel("training wall-clock minutes")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is left else "upper right", fontsize=8)
    left.set_ylim(top=max(98.0, left.get_ylim()[1]))
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/time_to_quality")
    parser.add_argument("--checkpoint", default=None, help="measure these weights instead of training")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--n-samples", type=int, default=5000, help="samples per w (a multiple of 10)")
    parser.add_argument("--n-steps", type=int, default=50, help="sampling steps")
    parser.add_argument("--w", default="0,0.1,0.3,1,2")
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help="keep snapshots every N steps (the curve's points, post-hoc EMA)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field as bench/recipe_ablation.py does, e.g. --set bf16=true")
    parser.add_argument("--curve", default=None, metavar="RUN", help="measure the snapshots of RUN (no training)")
    parser.add_argument("--every", type=int, default=1000, help="--curve: measure snapshots at multiples of this")
    parser.add_argument("--csv", default=None, help="--curve: where to write the curve's rows")
    parser.add_argument("--figure", default=None, help="--curve: where to draw the curve (PNG)")
    args = parser.parse_args()
    ws = [float(v) for v in args.w.split(",")]

    if args.curve is not None:
        floor = real_floor(args.n_samples)
        rows = curve(args.curve, ws, args.n_samples, args.n_steps, args.every, floor)
        for r in rows:
            print(r, flush=True)
        if args.csv:
            write_csv(rows, args.csv, fields=list(rows[0]))
        if args.figure:
            curve_figure(rows, floor, f"snapshots of {Path(args.curve).name}: {args.n_samples} samples per w, "
                         f"{args.n_steps} ancestral steps; {cpu_name()}", args.figure)
        return
    if args.checkpoint is None:
        t = time.perf_counter()
        train(recipe_from(args.preset, snapshot_every=args.snapshot_every or None, **parse_sets(args.set)), args.out,
              progress=True, command=f"python bench/time_to_quality.py --preset {args.preset}"
              + "".join(f" --set {item}" for item in args.set)
              + (f" --snapshot-every {args.snapshot_every}" if args.snapshot_every else ""))
        print(f"trained preset {args.preset!r} in {time.perf_counter() - t:.0f} s "
              f"({torch.get_num_threads()} threads)", flush=True)
        checkpoint = f"{args.out}/ema.safetensors"
    else:
        checkpoint = args.checkpoint
    model, meta = load_model(checkpoint)
    n = args.n_samples
    floor = real_floor(n)
    print("real training digits (the floor a perfect generator reaches), w shown as nan:")
    print(format_table([floor]), flush=True)
    rows = sweep(model, ws, n_per_class=n // 10, n_steps=args.n_steps,
                 label=checkpoint, meta=meta, csv_path=Path(args.out) / "sweep.csv", progress=True)
    print(f"\n{checkpoint} (step {meta.get('step')}), {n} samples per w, {args.n_steps} ancestral steps")
    print(format_table([floor] + rows))


if __name__ == "__main__":
    main()
