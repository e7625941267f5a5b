"""Recipe ablation: train one variant of a preset, then measure its samples; one CSV row per (variant, sampler).

Usage:
  python bench/recipe_ablation.py --name v --preset default --set objective=v [--set lr=1e-3 ...]
  python bench/recipe_ablation.py --name v --samplers-only --sampler ancestral:50:clip=none ...

Each ``--set KEY=VALUE`` overrides one field of the recipe (JSON values: ``--set 'model={"channels": [48, 96]}'``).
The run trains into ``OUT/NAME`` (resumable: run the same command again after an interruption), then
draws ``--n`` samples, class-balanced, at each ``--w`` with each ``--sampler`` (``NAME:STEPS[:OPT=VAL...]``,
``clip=none`` turns off the x-clipping; the final images are clamped to [-1, 1] either way, as saving
them as 8-bit images would) and appends accuracy and classifier FID against the 10,000 test
digits to ``OUT/ablation.csv`` with the training wall time and images/s. Rows already in the CSV are
skipped. Needs MNIST under $MINICFG_DATA. Compare rows measured in one session on one machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from minicfg.checkpoint import load_model
from minicfg.evaluator import cpu_name
from minicfg.generate import class_labels, generate
from minicfg.metrics import evaluate
from minicfg.train import recipe_from, train

FIELDS = ["name", "sets", "train_steps", "train_s", "images_per_s", "sampler", "n_steps", "options", "w", "n",
          "accuracy", "fid", "sample_s", "threads", "cpu"]


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sets(items: list[str]) -> dict:
    """``--set KEY=VALUE`` options as recipe overrides (JSON values; a bare word is a string)."""
    overrides = {}
    for item in items:
        key, _, val = item.partition("=")
        overrides[key] = _value(val)
    return overrides


def parse_sampler(spec: str) -> tuple[str, int, dict]:
    name, steps, *opts = spec.split(":")
    options = {}
    for opt in opts:
        key, _, val = opt.partition("=")
        key = {"clip": "clip_x"}.get(key, key)
        options[key] = None if val == "none" else _value(val)
    return name, int(steps), options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--n", type=int, default=2000, help="samples per w (a multiple of 10)")
    parser.add_argument("--w", default="0")
    parser.add_argument("--sampler", action="append", default=None, help="NAME:STEPS[:OPT=VAL]; repeatable")
    parser.add_argument("--samplers-only", action="store_true", help="measure an existing run, do not train")
    parser.add_argument("--checkpoint", default=None, help="measure these weights (implies --samplers-only)")
    args = parser.parse_args()

    overrides = parse_sets(args.set)
    run = Path(args.out) / args.name
    if args.checkpoint is None and not args.samplers_only:
        t = time.perf_counter()
        resume = (run / "checkpoint.safetensors").exists()
        if not (run / "ema.safetensors").exists():
            train(recipe_from(args.preset, **overrides), run, resume=resume, progress=True,
                  command="python bench/recipe_ablation.py " + " ".join(f"--set {s}" for s in args.set))
            print(f"{args.name}: trained in {time.perf_counter() - t:.0f} s", flush=True)
    model, meta = load_model(args.checkpoint or run / "ema.safetensors")
    log = run / "log.csv"
    ips = ""
    if log.exists():
        rates = [float(r["images_per_s"]) for r in csv.DictReader(open(log))][1:]
        ips = f"{sorted(rates)[len(rates) // 2]:.0f}" if rates else ""
    table = Path(args.out) / "ablation.csv"
    done = set()
    if table.exists():
        done = {(r["name"], r["sampler"], r["n_steps"], r["options"], r["w"], r["n"])
                for r in csv.DictReader(open(table))}
    new = not table.exists()
    with open(table, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for spec in args.sampler or ["ancestral:50"]:
            name, steps, options = parse_sampler(spec)
            for w in [float(v) for v in args.w.split(",")]:
                key = (args.name, name, str(steps), json.dumps(options), str(w), str(args.n))
                if key in done:
                    continue
                labels = class_labels(model.config.num_classes, args.n // model.config.num_classes)
                t = time.perf_counter()
                images = generate(model, labels, w, n_steps=steps, sampler=name, seed=1, **options)
                sample_s = time.perf_counter() - t
                m = evaluate(images.clamp(-1, 1), labels)  # as saving them as 8-bit images would
                row = {"name": args.name, "sets": " ".join(args.set), "train_steps": meta.get("step"),
                       "train_s": meta.get("elapsed_s"), "images_per_s": ips, "sampler": name, "n_steps": steps,
                       "options": json.dumps(options), "w": w, "n": args.n, "accuracy": f"{m['accuracy']:.4f}",
                       "fid": f"{m['fid']:.3f}", "sample_s": f"{sample_s:.1f}", "threads": torch.get_num_threads(),
                       "cpu": cpu_name()}
                writer.writerow(row)
                f.flush()
                print({k: row[k] for k in ("name", "sampler", "n_steps", "options", "w", "accuracy", "fid",
                                           "train_s", "images_per_s")}, flush=True)


if __name__ == "__main__":
    main()
