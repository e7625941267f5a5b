"""The sweeps behind docs/guidance_frontier.md (issue 31): every method of notebook 10 beside CFG on MNIST, three
seeds each, on the same starting noise, sampler grid and metrics.

Usage (needs MNIST under $MINICFG_DATA):
  OMP_NUM_THREADS=1 python bench/frontier_sweeps.py [--out docs/sweeps/frontier] [--part PART ...]

Every point is 500 samples (50 per class) scored by the shipped evaluator, starting noise from seeds 1, 2 and 3;
each is exactly what `minicfg sweep --guidance NAME --n-per-class 50 --seed S` draws (the parts were run as those
commands), and a point already in OUT/sweep.csv is read back, so an interrupted run continues where it stopped and
a finished one only redraws the figures. Parts:

- ``shipped``: CFG (0, 0.1, 0.3, 1, 3), APG, CFG-Zero*, the w schedule and ICG (0.3, 1, 3) on the shipped model,
  50 ancestral steps;
- ``deterministic``: CFG++ against CFG with DDIM, the sampler CFG++ was written for (50 steps; CFG++'s own scale
  l = 1 + w at 0.05, 0.1 and 0.2: on this grid a DDIM step of CFG++ is CFG at 1 + w' = l / (1 - e^(-h)), and the
  grid's middle steps are short, h about 0.06, so l = 0.4 already guides like w' of about 5 there; a first try at
  l = 0.4, 0.6, 0.8 gave classifier FIDs of 41 to 65, docs/guidance_frontier.md);
- ``conditional``: ICG on the model trained without label dropout (role ``conditional_model``), w = 0 included;
- ``student``: the guidance-distilled student (role ``distilled_model``) at 50 steps, and CFG at 25 steps,
  which costs the student's 50 network passes per sample (equal cost);
- ``cifar10``: the two methods repeated on the shipped CIFAR-10 model beside CFG at w = 1, 2, 3 (seed 1 only,
  500 samples a point, into OUT's sibling folder ``frontier_cifar10``): APG, made for the over-saturation of large
  w, and the w schedule, which moves guidance away from the noise end where CIFAR-10 loses its diversity.

The analysis (means and seed spreads, the frontier figure, the verdicts) is bench/guidance_frontier.py's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minicfg.checkpoint import shipped_weights
from minicfg.distill import distilled
from minicfg.evaluator import cpu_name
from minicfg.guidance import DEFAULT_GUIDANCE, GUIDANCE
from minicfg.guidance_frontier import apg, cfg_zero_star, cfgpp, independent_condition, w_schedule
from minicfg.samplers import ancestral, ddim
from minicfg.sweep import run_sweep

NAME = {m.builder: name for name, m in GUIDANCE.items()}  # registry names, spelled only in the registry
SEEDS = (1, 2, 3)
PARTS = ("shipped", "deterministic", "conditional", "student", "cifar10")
CONDITIONAL_LABEL = "conditional model (p_uncond = 0)"


def plan(part: str) -> list[dict]:
    """The sweeps of one part: keyword arguments of :func:`minicfg.sweep.run_sweep` (without out and seed)."""
    shipped = dict(sampler=ancestral.__name__, n_steps=(50,))
    if part == "shipped":
        return [dict(guidance=DEFAULT_GUIDANCE, ws=[0, 0.1, 0.3, 1, 3], **shipped)] + [
            dict(guidance=NAME[fn], ws=[0.3, 1, 3], **shipped)
            for fn in (apg, cfg_zero_star, w_schedule, independent_condition)]
    if part == "deterministic":
        return [dict(guidance=DEFAULT_GUIDANCE, ws=[0, 0.3, 1, 3], sampler=ddim.__name__, n_steps=(50,)),
                dict(guidance=NAME[cfgpp], ws=[-0.95, -0.9, -0.8], sampler=ddim.__name__, n_steps=(50,))]
    if part == "conditional":
        return [dict(guidance=NAME[independent_condition], ws=[0, 0.3, 1, 3], label=CONDITIONAL_LABEL,
                     checkpoint=shipped_weights(role="conditional_model"), **shipped)]
    if part == "student":
        return [dict(guidance=NAME[distilled], ws=[0, 0.3, 1, 3], **shipped),
                dict(guidance=DEFAULT_GUIDANCE, ws=[0.3, 1, 3], sampler=ancestral.__name__, n_steps=(25,))]
    if part == "cifar10":
        return [dict(guidance=name, ws=[1, 2, 3], dataset="cifar10", **shipped)
                for name in (DEFAULT_GUIDANCE, NAME[apg], NAME[w_schedule])]
    raise ValueError(f"unknown part {part!r}; choose one of {PARTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/sweeps/frontier")
    parser.add_argument("--part", action="append", choices=PARTS,
                        help="which sweeps (repeatable; default all, in this order)")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}", flush=True)
    for part in args.part or PARTS:
        out = Path(args.out).with_name("frontier_cifar10") if part == "cifar10" else Path(args.out)
        for seed in SEEDS[:1] if part == "cifar10" else SEEDS:
            for sweep_args in plan(part):
                print(run_sweep(out, seed=seed, n_per_class=50, paper=None, **sweep_args), flush=True)


if __name__ == "__main__":
    main()
