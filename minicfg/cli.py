"""The ``minicfg`` command line: argument handling only; each command calls a library function."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]


# -- argument types: a bad value becomes a one-line argparse error ---------------------------------
def _w_list(text: str) -> list[float]:
    from .guidance import check_w

    try:
        ws = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0,1,3, got {text!r}") from None
    if not ws:
        raise argparse.ArgumentTypeError("give at least one w, e.g. --w 0,1,3")
    for w in ws:
        try:
            check_w(w)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return ws


def _checked(convert, ok, what: str):
    """An argparse type: ``convert`` the text, then require ``ok(value)``; else a one-line error naming ``what``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
_positive_ints = _checked(lambda t: [int(v) for v in t.split(",") if v.strip()], lambda v: v and min(v) >= 1,
                          "comma-separated positive integers such as 16,32,64")
_positive_float = _checked(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
_probability = _checked(float, lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]")


# -- commands -------------------------------------------------------------------------------------
def _cmd_download(args) -> None:
    from . import data

    for name in args.dataset:
        for train in (True, False):
            ds = data.load(name, train=train, download=True, root=args.root)
            print(f"{name} {'train' if train else 'test'}: {len(ds)} images under {data.data_root(args.root)}")


def _cmd_train(args) -> None:
    from . import data
    from .sampling import training_preview
    from .train import PRESETS, TrainConfig, train

    recipe = dict(PRESETS[args.preset])
    if args.minutes is not None:
        recipe.update(minutes=args.minutes, steps=None)
    if args.steps is not None:
        recipe.update(steps=args.steps, minutes=None)
    for key in ("p_uncond", "seed", "batch_size", "lr"):  # options left unset keep the preset's value
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    cfg = TrainConfig(dataset=args.dataset, bf16=args.bf16, checkpoint_every_s=args.checkpoint_every, **recipe)
    if args.download:
        data.load(args.dataset, train=True, download=True)
    command = "minicfg " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    t = time.perf_counter()
    trainer = train(cfg, args.out, resume=args.resume, progress=not args.no_progress, command=command,
                    on_sample=None if args.no_preview else training_preview)
    ema = Path(args.out) / "ema.safetensors"
    use = (f"sample them with `minicfg sample --checkpoint {ema} --out samples.png`" if cfg.objective == "eps"
           else f"guide with them: `minicfg sample --guidance classifier --classifier {ema} --out samples.png`")
    print(f"trained {trainer.step} steps in {time.perf_counter() - t:.0f} s; EMA weights: {ema}; {use}")


def _cmd_sample(args) -> None:
    from .checkpoint import load_model
    from .sampling import class_labels, generate_grid, save_grid, save_npz

    out = Path(args.out)
    if out.suffix not in (".png", ".npz"):
        raise ValueError(f"--out must end in .png (a grid) or .npz (arrays), got {out.name!r}")
    model, meta = load_model(args.checkpoint)
    classifier = None
    if args.guidance == "classifier":
        classifier, _ = load_model(args.classifier, dataset="mnist_classifier")
    panels = generate_grid(model, args.w, n_per_class=args.n_per_class, seed=args.seed, n_steps=args.steps,
                           sampler=args.sampler, progress=not args.no_progress, guidance=args.guidance,
                           classifier=classifier, base=args.base)
    if out.suffix == ".png":
        save_grid(panels, args.n_per_class, out)
    else:
        save_npz(panels, class_labels(model.config.num_classes, args.n_per_class), out)
    n = sum(len(x) for x in panels.values())
    print(f"wrote {n} samples ({len(panels)} values of w) to {out}")


def _cmd_train_evaluator(args) -> None:
    import os

    from .evaluator import train_evaluator

    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "minicfg " + shlex.join(
        sys.argv[1:] if args.argv is None else args.argv)
    _, info = train_evaluator(args.out, epochs=args.epochs, seed=args.seed, progress=not args.no_progress,
                              command=command)
    print(f"trained the evaluator in {info['wall_time_s']:.0f} s; MNIST test accuracy "
          f"{info['test_accuracy']:.2%}; weights: {args.out} (provenance in {Path(args.out).with_suffix('.json')})")


def _cmd_evaluate(args) -> None:
    from .metrics import evaluate_npz, format_table

    rows = evaluate_npz(args.samples, reference=args.reference, evaluator=args.evaluator, k=args.k,
                        disk_cache=args.cache_reference)
    print(f"{args.samples}: classifier metrics vs the MNIST {args.reference} set "
          f"(accuracy: recognised as the requested label; cFID: lower is better; see docs/metrics.md)")
    print(format_table(rows))


def _cmd_sweep(args) -> None:
    from .checkpoint import load_model
    from .sweep import best_row, paper_results, read_csv, sweep
    from .sweep_plots import metrics_figure, tradeoff_figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, meta = load_model(args.checkpoint)
    label = args.label or (str(args.checkpoint) if args.checkpoint else "shipped mnist")
    csv_path = out / "sweep.csv"
    rows = sweep(model, args.w, n_per_class=args.n_per_class, steps=args.steps, sampler=args.sampler,
                 seed=args.seed, label=label, meta=meta, csv_path=csv_path, progress=not args.no_progress)
    every = read_csv(csv_path)  # this sweep and any earlier ones written to the same folder
    # one curve per setting: by the columns that differ between the rows, unless --by says otherwise
    varies = [c for c in ("label", "steps", "sampler", "seed", "w") if len({r[c] for r in every}) > 1]
    by = args.by or [c for c in varies if c != "w"] or "label"
    paper = None if args.paper == "none" else paper_results(int(args.paper))
    tradeoff_figure(every, by=by, paper=paper, is_max=model.config.num_classes).savefig(out / "fid_vs_is.png")
    # a steps ablation is drawn against the number of steps, one line per w (and model)
    x, x_by = ("steps", [c for c in varies if c != "steps"] or "label") if "steps" in varies else ("w", by)
    metrics_figure(every, by=x_by, x=x).savefig(out / f"metrics_vs_{x}.png")
    best = best_row(rows)
    print(f"best cFID of this sweep: {best['fid']:.2f} at w={best['w']:g} ({best['steps']} steps); "
          f"wrote {csv_path} ({len(every)} rows), {out / 'fid_vs_is.png'} and {out / f'metrics_vs_{x}.png'}")


def _add_train_options(p: argparse.ArgumentParser, presets: list[str]) -> None:
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist", help="training data (default mnist)")
    p.add_argument("--out", required=True, help="folder for checkpoints, log and samples")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=_positive_float, help="train for about this many minutes")
    budget.add_argument("--steps", type=_positive_int, help="train for this many optimizer steps")
    p.add_argument("--preset", choices=presets, default=presets[0],
                   help="recipe (see minicfg.train.PRESETS): " + ", ".join(presets) + f" (default {presets[0]})")
    p.add_argument("--seed", type=int, help="random seed (default 0); a run is reproducible from its seed")
    p.add_argument("--batch-size", type=_positive_int, help="images per step (default 128)")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate (default from the preset)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (slower on CPUs without bf16 units)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--checkpoint-every", type=_positive_float, default=60.0,
                   help="seconds between checkpoints (default 60): at most this much work is lost to a crash")
    p.add_argument("--download", action="store_true", help="download the data set first if missing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minicfg",
        description="Diffusion guidance on small data: download data, train, sample, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("download", help="download a data set into $MINICFG_DATA (needs internet)")
    p.add_argument("--dataset", nargs="+", choices=["mnist", "cifar10"], default=["mnist"],
                   help="which data sets to fetch (default: mnist)")
    p.add_argument("--root", default=None, help="data folder (default: $MINICFG_DATA or ~/.cache/minicfg)")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("train", help="train a class-conditional diffusion model with label dropout (CFG)",
                       description="Train with the joint conditional/unconditional objective (paper Alg. 1). "
                       "Checkpoints are written atomically to OUT/checkpoint.safetensors every minute and on "
                       "Ctrl-C; continue an interrupted run with --resume. The EMA weights end in "
                       "OUT/ema.safetensors, a preview grid in OUT/samples.png, the loss in OUT/log.csv.")
    _add_train_options(p, presets=["default", "live", "smoke"])
    p.add_argument("--p-uncond", type=_probability, help="probability of dropping a label to null (default 0.1)")
    p.add_argument("--no-preview", action="store_true", help="do not write OUT/samples.png during training")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("train-classifier", help="train the noisy classifier p(c | z_lam) for classifier guidance",
                       description="Train a classifier of noised images at the log-SNRs the diffusion model sees "
                       "(Dhariwal & Nichol 2021), with the same checkpoints, --resume and EMA as `minicfg train`. "
                       "Its EMA weights end in OUT/ema.safetensors.")
    _add_train_options(p, presets=["classifier"])
    p.set_defaults(func=_cmd_train, p_uncond=None, no_preview=True)

    p = sub.add_parser("sample", help="draw guided samples into a PNG grid or an NPZ file",
                       description="Sample with classifier-free guidance eps~ = (1+w) eps(z,c) - w eps(z). "
                       "Every panel starts from the same noise. Without --checkpoint the shipped MNIST "
                       "weights are used.")
    p.add_argument("--checkpoint", default=None, help="weights file or training folder (default: shipped MNIST)")
    p.add_argument("--w", type=_w_list, default=[0.0, 1.0, 3.0],
                   help="comma-separated guidance strengths (paper's w; 0 = conditional, -1 = unconditional)")
    p.add_argument("--n-per-class", type=_positive_int, default=8, help="samples per class and w (default 8)")
    p.add_argument("--steps", type=_positive_int, default=50, help="sampling steps (default 50)")
    p.add_argument("--sampler", choices=["ancestral", "ddim"], default="ancestral",
                   help="ancestral (paper Alg. 2, v=0.3) or deterministic ddim")
    p.add_argument("--guidance", choices=["cfg", "classifier"], default="cfg",
                   help="cfg: classifier-free (default); classifier: the noisy classifier's gradient")
    p.add_argument("--classifier", default=None,
                   help="noisy classifier for --guidance classifier (default: the shipped MNIST one)")
    p.add_argument("--base", choices=["uncond", "cond"], default="uncond",
                   help="model guided by the classifier: unconditional (Dhariwal & Nichol, default) or conditional")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default 0)")
    p.add_argument("--out", required=True, help="FILE.png for a grid, FILE.npz for images/labels/w arrays")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("train-evaluator", help="train the MNIST evaluation classifier used by `minicfg evaluate`",
                       description="Train the clean-MNIST CNN whose features and softmax give the offline metrics "
                       "(not the noisy guidance classifier). Writes OUT (safetensors) and OUT with .json: the "
                       "command, wall time, machine and measured test accuracy.")
    p.add_argument("--out", required=True,
                   help="weights file to write, e.g. minicfg/weights/mnist_evaluator.safetensors")
    p.add_argument("--epochs", type=_positive_int, default=4, help="passes over the 60,000 training digits (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train_evaluator)

    p = sub.add_parser("evaluate", help="score samples (an NPZ from `minicfg sample`) with offline MNIST metrics",
                       description="For each w in SAMPLES.npz: label accuracy, classifier FID, inception score, "
                       "precision and recall, all from the shipped MNIST evaluator (docs/metrics.md says what they "
                       "can and cannot tell).")
    p.add_argument("samples", help="NPZ with images (uint8 N x 1 x 28 x 28), labels and w, from `minicfg sample`")
    p.add_argument("--reference", choices=["test", "train"], default="test",
                   help="real digits to compare with (default: the 10,000 MNIST test digits)")
    p.add_argument("--evaluator", default=None, help="evaluator weights (default: the shipped ones)")
    p.add_argument("--k", type=_positive_int, default=3, help="neighbours for precision/recall (default 3)")
    p.add_argument("--cache-reference", action="store_true",
                   help="keep the reference features under $MINICFG_DATA/minicfg-cache for later runs")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("sweep", help="sample and score at several w (and steps): CSV and FID-vs-IS plots",
                       description="The paper's trade-off experiment (its Sec. 4, Figs. 4-5): for every w and number "
                       "of sampling steps, sample N-PER-CLASS digits per class from the same starting noise and "
                       "score them (docs/metrics.md). Writes OUT/sweep.csv (a row per point, written as each "
                       "finishes; a rerun skips points already there, so an interrupted sweep resumes), "
                       "OUT/fid_vs_is.png and OUT/metrics_vs_w.png (metrics_vs_steps.png when several numbers of "
                       "steps are swept). Sweeps of several models into the same OUT are plotted together.")
    p.add_argument("--checkpoint", default=None, help="weights file or training folder (default: shipped MNIST)")
    p.add_argument("--w", type=_w_list, default=[0.0, 0.1, 0.3, 0.5, 1.0, 2.0, 4.0],
                   help="comma-separated guidance strengths (default 0,0.1,0.3,0.5,1,2,4)")
    p.add_argument("--n-per-class", type=_positive_int, default=100,
                   help="samples per class and point (default 100: 1,000 per point)")
    p.add_argument("--steps", type=_positive_ints, default=[50],
                   help="sampling steps, one number or a comma-separated list such as 16,32,64 (default 50)")
    p.add_argument("--sampler", choices=["ancestral", "ddim"], default="ancestral", help="sampler (default ancestral)")
    p.add_argument("--seed", type=int, default=1, help="seed of the starting noise, shared by every point (default 1)")
    p.add_argument("--label", default=None, help="name of this model in the CSV and plots (default: the checkpoint)")
    p.add_argument("--by", choices=["label", "p_uncond", "steps", "seed"], default=None,
                   help="one curve per value of this column (default: the columns among label, steps, sampler "
                   "and seed whose values differ between the rows)")
    p.add_argument("--paper", choices=["1", "2", "none"], default="1",
                   help="plot the paper's Table 1 (p_uncond, ImageNet 64) or 2 (steps, ImageNet 128) beside ours")
    p.add_argument("--out", required=True, help="folder for sweep.csv and the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        parser.exit(2, f"minicfg {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "minicfg: interrupted\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
