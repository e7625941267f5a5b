"""Network passes and seconds per sample of every guidance method of notebook 10, side by side in one process.

Usage: OMP_NUM_THREADS=1 python bench/guidance_cost.py [--n 100] [--steps 50] [--repeats 3] [--w 1]

Samples ``--n`` images (classes in turn) with each method on the shipped MNIST models (the distilled student and
the model without label dropout for theirs), ``--steps`` ancestral steps, and reports the network passes per
sample (counted) and the median wall time per sample over ``--repeats`` rounds; the methods take turns within a
round, so a machine that slows down during the run slows all of them alike. Equal time, for docs/guidance_frontier.md:
the student's cost against CFG's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minicfg.checkpoint import load_model
from minicfg.distill import distilled
from minicfg.evaluator import cpu_name
from minicfg.generate import class_labels, generate
from minicfg.guidance import DEFAULT_GUIDANCE, GUIDANCE
from minicfg.guidance_frontier import apg, cfg_zero_star, cfgpp, independent_condition, w_schedule
from minicfg.sweep import count_passes

NAME = {m.builder: name for name, m in GUIDANCE.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--w", type=float, default=1.0)
    args = parser.parse_args()
    model, _ = load_model()
    student, _ = load_model(role="distilled_model")
    conditional, _ = load_model(role="conditional_model")
    labels = class_labels(10, max(1, args.n // 10))
    methods = {name: (model, name, {}) for name in
               [DEFAULT_GUIDANCE] + [NAME[f] for f in (cfgpp, apg, cfg_zero_star, w_schedule, independent_condition)]}
    methods[f"{NAME[independent_condition]} (p_uncond = 0 model)"] = (conditional, NAME[independent_condition], {})
    methods[NAME[distilled]] = (model, NAME[distilled], {"student": student})
    seconds = {name: [] for name in methods}
    passes = {}
    print(f"CPU: {cpu_name()}, torch threads: {torch.get_num_threads()}; {len(labels)} samples, {args.steps} "
          f"ancestral steps, w = {args.w:g}", flush=True)
    for _ in range(args.repeats):
        for name, (net, guidance, options) in methods.items():
            t = time.perf_counter()
            with count_passes([net, *options.values()]) as counted:
                generate(net, labels, args.w, n_steps=args.steps, guidance=guidance, seed=0, **options)
            seconds[name].append((time.perf_counter() - t) / len(labels))
            passes[name] = counted[0] / len(labels)
    cfg_s = statistics.median(seconds[DEFAULT_GUIDANCE])
    print(f"{'method':34} {'passes/sample':>14} {'ms/sample':>10} {'vs CFG':>7}")
    for name in methods:
        s = statistics.median(seconds[name])
        print(f"{name:34} {passes[name]:14.0f} {1000 * s:10.1f} {s / cfg_s:7.2f}")


if __name__ == "__main__":
    main()
