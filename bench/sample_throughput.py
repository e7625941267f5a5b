"""Guided sampling throughput: seconds for N CFG samples at 50 steps (cond + uncond in one batch).

Usage: python bench/sample_throughput.py [--n 1000] [--n-steps 50] [--batch-size 500] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import time

import torch

from minicfg.checkpoint import load_model
from minicfg.generate import class_labels, generate
from minicfg.samplers import DEFAULT_SAMPLER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--w", type=float, default=1.0)
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    model, _ = load_model(args.checkpoint)
    labels = class_labels(10, args.n // 10 + 1)[: args.n]
    generate(model, labels[:20], args.w, n_steps=2)  # warm-up
    t = time.perf_counter()
    generate(model, labels, args.w, n_steps=args.n_steps, sampler=args.sampler, batch_size=args.batch_size)
    dt = time.perf_counter() - t
    print(f"{args.n} guided samples (w={args.w}, {args.n_steps} {args.sampler} steps, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads): {dt:.1f} s, {args.n / dt:.1f} samples/s")


if __name__ == "__main__":
    main()
