"""Time to quality: train the default recipe from scratch, then measure its samples at several w.

Usage: python bench/time_to_quality.py [--out runs/ttq] [--n-samples 5000] [--n-steps 50] [--w 0,0.1,0.3,1,2]
       python bench/time_to_quality.py --checkpoint minicfg/weights/mnist.safetensors   # skip training
Prints the training wall time, the metrics of as many real training digits (the floor a perfect generator
reaches), then for each w: label accuracy, classifier FID, IS, precision and recall, all against the 10,000
test digits. The rows are kept in OUT/sweep.csv (`minicfg.sweep`), so an interrupted run resumes.
Needs MNIST under $MINICFG_DATA.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from minicfg.checkpoint import load_model
from minicfg.data import mnist
from minicfg.metrics import evaluate, format_table
from minicfg.sweep import sweep
from minicfg.train import recipe_from, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/time_to_quality")
    parser.add_argument("--checkpoint", default=None, help="measure these weights instead of training")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--n-samples", type=int, default=5000, help="samples per w (a multiple of 10)")
    parser.add_argument("--n-steps", type=int, default=50, help="sampling steps")
    parser.add_argument("--w", default="0,0.1,0.3,1,2")
    args = parser.parse_args()

    if args.checkpoint is None:
        t = time.perf_counter()
        train(recipe_from(args.preset), args.out, progress=True,
              command=f"python bench/time_to_quality.py --preset {args.preset}")
        print(f"trained preset {args.preset!r} in {time.perf_counter() - t:.0f} s "
              f"({torch.get_num_threads()} threads)", flush=True)
        checkpoint = f"{args.out}/ema.safetensors"
    else:
        checkpoint = args.checkpoint
    model, meta = load_model(checkpoint)
    n = args.n_samples
    real = mnist(train=True).tensors[0]  # not the test digits: the reference must not contain them
    floor = evaluate(real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:n]])
    floor["w"] = float("nan")  # the row of real digits
    print("real training digits (the floor a perfect generator reaches), w shown as nan:")
    print(format_table([floor]), flush=True)
    rows = sweep(model, [float(v) for v in args.w.split(",")], n_per_class=n // 10, n_steps=args.n_steps,
                 label=checkpoint, meta=meta, csv_path=Path(args.out) / "sweep.csv", progress=True)
    print(f"\n{checkpoint} (step {meta.get('step')}), {n} samples per w, {args.n_steps} ancestral steps")
    print(format_table([floor] + rows))


if __name__ == "__main__":
    main()
