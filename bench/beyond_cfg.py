"""The guidance variants of notebook 09 swept beside plain CFG on the shipped MNIST model: one resumable CSV,
the frontier figure and the seed spread.

Usage (needs MNIST under $MINICFG_DATA; about 70 s per point on two idle cores):
  OMP_NUM_THREADS=2 python bench/beyond_cfg.py [--out docs/sweeps/beyond_cfg] [--weak-same-size PATH]

Every point is 1,000 samples (100 per class), 50 ancestral steps, x clipped, starting noise from seed 1 (seeds
2 and 3 for each method's own spread, at two or three points of each), exactly as
`minicfg sweep --guidance NAME` draws them; points already in OUT/sweep.csv are read back, so an interrupted run
continues where it stopped, and plain CFG's points can be copied in from docs/sweeps/shipped/sweep.csv (same
label and settings).
``--weak-same-size`` adds autoguidance with a second weak model (e.g. the `live` preset's: the main architecture,
1,000 steps). Writes OUT/sweep.csv and OUT/frontier.png and prints each method's seed spread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minicfg.checkpoint import load_model
from minicfg.evaluator import cpu_name
from minicfg.guidance import DEFAULT_GUIDANCE, GUIDANCE
from minicfg.guidance_variants import autoguidance, interval_guidance, rescale_guidance
from minicfg.sweep import read_csv, sweep
from minicfg.sweep_plots import frontier_figure, seed_spreads

LABEL = "default v (6,000 steps)"  # the label of docs/sweeps/shipped, so plain CFG's rows are shared
NAME = {m.builder: name for name, m in GUIDANCE.items()}  # registry names, spelled only in the registry
INTERVAL, RESCALE, AUTO = NAME[interval_guidance], NAME[rescale_guidance], NAME[autoguidance]
#: (guidance, options, ws, seed): plain CFG, the three variants at their defaults, and the seed repeats
PLAN = [
    (DEFAULT_GUIDANCE, {}, [0, 0.1, 0.3, 0.5, 1, 2, 4], 1),
    (INTERVAL, {}, [0.3, 1, 2, 4, 8], 1),
    (RESCALE, {}, [0.1, 0.3, 1, 2, 4], 1),
    (AUTO, {"weak": "shipped"}, [0.3, 1, 2, 4], 1),
    (DEFAULT_GUIDANCE, {}, [0.1, 0.5, 2], 2),
    (DEFAULT_GUIDANCE, {}, [0.1, 0.5, 2], 3),
    # each variant's own seed spread, at the points its verdict in notebook 09 rests on
    (AUTO, {"weak": "shipped"}, [0.3, 1], 2),
    (INTERVAL, {}, [0.3, 1], 2),
    (RESCALE, {}, [0.1, 1], 2),
    (AUTO, {"weak": "shipped"}, [0.3, 1], 3),
    (INTERVAL, {}, [0.3, 1], 3),
    (RESCALE, {}, [0.1, 1], 3),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/sweeps/beyond_cfg", help="folder for sweep.csv and frontier.png")
    parser.add_argument("--weak-same-size", default=None, help="a second weak model for autoguidance (weights file)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "sweep.csv"
    model, meta = load_model()
    plan = list(PLAN)
    if args.weak_same_size:
        plan.append((AUTO, {"weak": args.weak_same_size}, [0.3, 1, 2], 1))
    print(f"CPU: {cpu_name()}")
    for guidance, options, ws, seed in plan:
        options = {k: load_model(None if v == "shipped" else v, role="weak_model")[0] if k == "weak" else v
                   for k, v in options.items()}
        sweep(model, ws, n_per_class=100, n_steps=50, seed=seed, label=LABEL, meta=meta, csv_path=csv_path,
              guidance=guidance, options=options)
    rows = read_csv(csv_path)
    spreads = seed_spreads(rows)
    for (guidance, options), spread in spreads.items():
        print(f"seed spread of {guidance} {options} (largest of {spread['settings']} settings, seeds 1-3): accuracy "
              f"{spread['accuracy']:.4f}, recall {spread['recall']:.4f}, classifier FID "
              f"{100 * spread['fid_rel']:.1f}% of its value")
    shipped_weak = load_model(role="weak_model")[0].fingerprint
    names = {}
    for r in rows:
        key = (r["guidance"], r["options"])
        if r["guidance"] == AUTO:
            weak = "the shipped weak model (16/32 channels, 1,500 steps)" if shipped_weak in r["options"] else \
                "a weak model of the main size (32/64 channels, 1,000 steps)"
            names[key] = f"autoguidance by {weak}"
        else:
            names[key] = "CFG (Eq. 6)" if r["guidance"] == DEFAULT_GUIDANCE else f"{r['guidance']}: {r['options']}"
    frontier_figure([r for r in rows if r["seed"] == 1], names=names, spread=spreads, zoom_w=1, zoom_fid=10).savefig(
        out / "frontier.png")
    print(f"wrote {csv_path} ({len(rows)} rows) and {out / 'frontier.png'}")


if __name__ == "__main__":
    main()
