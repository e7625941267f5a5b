"""Post-hoc EMA: rebuild EMAs of several lengths from one run's snapshots and measure each (Karras et al. 2024).

Usage: python bench/posthoc_ema.py RUN [--widths 0.03,0.05,0.07,0.1,0.15,0.2] [--w 0,0.1] [--n-samples 2000]
                                      [--step N] [--csv docs/recipe/posthoc_ema.csv]
RUN is a training folder written with ``--snapshot-every`` (``minicfg train`` or ``bench/time_to_quality.py``).
For each relative width sigma_rel the EMA at ``--step`` (default: the last snapshot) is rebuilt
(``minicfg.posthoc_ema.synthesize``, written to RUN/posthoc/) and sampled at every w on the same noise as the
run's usual EMA (the ``ema.`` weights of the same snapshot), which is measured too, with its own sigma_rel
computed from its decay rule. Points are kept in RUN/posthoc_sweep.csv, so an interrupted run resumes.
Needs MNIST under $MINICFG_DATA.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minicfg.checkpoint import load_model
from minicfg.evaluator import cpu_name
from minicfg.posthoc_ema import ema_width, snapshots, synthesize
from minicfg.sweep import sweep, write_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--widths", default="0.03,0.05,0.07,0.1,0.15,0.2")
    parser.add_argument("--w", default="0,0.1")
    parser.add_argument("--n-samples", type=int, default=2000, help="samples per w (a multiple of 10)")
    parser.add_argument("--n-steps", type=int, default=50, help="sampling steps")
    parser.add_argument("--step", type=int, default=None, help="the step to rebuild at (default: the last snapshot)")
    parser.add_argument("--csv", default=None, help="where to write the table's rows")
    args = parser.parse_args()
    run = Path(args.run)
    ws = [float(v) for v in args.w.split(",")]
    stored = dict(snapshots(run))
    step = args.step or max(stored)
    snapshot = stored[step]
    table = []

    def measure(name: str, model, meta, width: float) -> None:
        rows = sweep(model, ws, n_per_class=args.n_samples // 10, n_steps=args.n_steps, label=name, meta=meta,
                     csv_path=run / "posthoc_sweep.csv")
        for r in rows:
            table.append({"ema": name, "sigma_rel": round(width, 4), "step": step, "w": r["w"],
                          "accuracy": r["accuracy"], "fid": round(r["fid"], 3), "precision": r["precision"],
                          "recall": r["recall"], "n": r["n"], "cpu": cpu_name()})
            print(table[-1], flush=True)

    model, meta = load_model(snapshot)
    train = meta["train"]
    measure("usual", model, meta, ema_width(train["ema_decay"], step, train.get("ema_fraction")))
    for width in [float(v) for v in args.widths.split(",")]:
        out = run / "posthoc" / f"ema_{width:g}_step{step}.safetensors"
        model, meta = synthesize(run, width, step=step, out=out)
        print(f"sigma_rel {width:g}: fit error {meta['posthoc_ema']['fit_error']:.4f}", flush=True)
        measure(f"posthoc {width:g}", model, meta, width)
    if args.csv:
        write_csv(table, args.csv, fields=list(table[0]))


if __name__ == "__main__":
    main()
