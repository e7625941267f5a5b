"""What CFG samples, measured on the 1-D toy with exact scores (issue 31, point 3): W1 to the tilted density.

Usage (about 2 minutes on one thread):
  OMP_NUM_THREADS=1 python bench/tilted_density.py [--n 10000] [--repeats 5] [--figure PATH]

The toy is two 1-D classes, N(-1.5, 1) and N(+1.5, 1), equal weights; class 0 is guided. For each w, each sampler
draws `repeats` independent sets of n samples (seeds 1, 2, ...) and the table gives the mean W1 to the tilted
density p(x|c)^(1+w) p(x)^(-w) and the spread (standard deviation) over the sets; the floor column is the same for
20 sets of exact draws from the tilted density itself (inverse CDF): what a perfect sampler reaches at this n. Samplers:
CFG (minicfg.toy.cfg_eps_fn) with minicfg.samplers' ancestral (v = 0.3) and ddim on a cosine grid from lam = -20 to
20, at two step counts (the gap is not discretisation error if it does not shrink with more steps), and the
corrector: unadjusted Langevin with the score of the same CFG eps at the final log-SNR (lam = 20), started from the
DDIM samples. Prints a markdown table and writes the figure (docs/figures/what_cfg_samples.png) at w = 3.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from minicfg import samplers
from minicfg.evaluator import cpu_name
from minicfg.schedules import sampling_lams
from minicfg.tilted import mixture_1d, mixture_tilted, sample_set, tilted_figure

MEANS, STDS, LABEL = (-1.5, 1.5), (1.0, 1.0), 0
LANGEVIN_STEP, LANGEVIN_STEPS = 0.01, 1000
ANCESTRAL = samplers.ancestral.__name__  # the label of its rows, and the registered name


def draw(name: str, mixture, w, n: int, n_steps: int, seed: int) -> np.ndarray:
    """One set of n samples of class LABEL from the named row's sampler (seeded)."""
    sampler = ANCESTRAL if name == ANCESTRAL else samplers.ddim.__name__
    langevin = (LANGEVIN_STEP, LANGEVIN_STEPS) if name == "DDIM + Langevin" else None
    return sample_set(mixture, LABEL, w, n, sampling_lams(n_steps, dtype=torch.float64), sampler, seed=seed,
                      langevin=langevin).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5, help="sets of n samples per sampler (at least 2)")
    parser.add_argument("--floor-repeats", type=int, default=20, help="sets of n exact draws for the floor")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 400], help="sampler steps to try")
    parser.add_argument("--ws", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    parser.add_argument("--figure", default="docs/figures/what_cfg_samples.png")
    parser.add_argument("--figure-w", type=float, default=3.0)
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the spread over sets is the Monte Carlo error)")
    torch.set_num_threads(1)
    mixture = mixture_1d(MEANS, STDS)
    cond = mixture_tilted(mixture, LABEL, 0.0)
    print(f"CPU: {cpu_name()}, torch threads: {torch.get_num_threads()}")
    print(f"n = {args.n} samples per set, {args.repeats} sets per row; Langevin step {LANGEVIN_STEP}, "
          f"{LANGEVIN_STEPS} steps\n")
    print("| w | sampler | steps | W1 to the tilt (mean ± sd over sets) | floor: W1 of exact draws (mean ± sd) "
          "| sample mean / std | tilted mean / std | seconds per set |")
    print("|---|---|---|---|---|---|---|---|")
    for w in args.ws:
        target = mixture_tilted(mixture, LABEL, w)
        t_mean, t_std = target.mean_std()
        floor = target.w1_null(args.n, args.floor_repeats, torch.Generator().manual_seed(0))
        runs = [(name, steps) for steps in args.steps for name in (ANCESTRAL, "DDIM")]
        runs.append(("DDIM + Langevin", min(args.steps)))
        figure_sets = {}
        for name, steps in runs:
            values, moments, seconds, first = [], [], [], None
            for r in range(args.repeats):
                t0 = time.perf_counter()
                x = draw(name, mixture, w, args.n, steps, seed=1 + r)
                seconds.append(time.perf_counter() - t0)
                values.append(target.wasserstein1(x))
                moments.append((x.mean(), x.std()))
                first = x if first is None else first
            mean, spread = float(np.mean(values)), float(np.std(values, ddof=1))
            m, s = np.mean(moments, axis=0)
            if steps == min(args.steps):
                figure_sets[name] = (first, (mean, spread))
            print(f"| {w:g} | {name} | {steps} | {mean:.4f} ± {spread:.4f} | {floor[0]:.4f} ± {floor[1]:.4f} "
                  f"| {m:.3f} / {s:.3f} | {t_mean:.3f} / {t_std:.3f} | {np.mean(seconds):.2f} |", flush=True)
        if args.figure and w == args.figure_w:
            samples = {name: x for name, (x, _) in figure_sets.items()}
            distances = {name: d for name, (_, d) in figure_sets.items()}
            fig = tilted_figure(target, cond, samples, distances, w=w, floor=floor)
            fig.savefig(args.figure)
            print(f"\nfigure: {args.figure} (legend: W1 mean ± spread over the {args.repeats} sets at "
                  f"{min(args.steps)} steps; histograms: the first set)")


if __name__ == "__main__":
    main()
