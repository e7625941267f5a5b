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
    from ._checks import check_w

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


def _literal(text: str):
    """A Python literal (number, None, tuple, ...) if the text is one, else the text itself."""
    import ast

    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def _option(text: str) -> tuple[str, object]:
    """KEY=VALUE for a sampler's option; VALUE is read as a Python literal if it is one."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as v=0.5, got {text!r}")
    return key.strip(), _literal(value)


def _command_line(args) -> str:
    """The command as typed (for provenance), with OMP_NUM_THREADS when it was set."""
    import os

    threads = os.environ.get("OMP_NUM_THREADS")
    per_node = os.environ.get("LOCAL_WORLD_SIZE") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    launcher = f"torchrun --nproc_per_node {per_node} -m " if per_node else ""
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + launcher + "minicfg " + shlex.join(
        sys.argv[1:] if args.argv is None else args.argv)


# -- commands: each calls one library function ------------------------------------------------------
def _cmd_download(args) -> None:
    from .data import download

    print("\n".join(download(args.dataset, root=args.root)))


def _cmd_train(args) -> None:
    from .data import get_dataset
    from .distributed import teardown
    from .train import OBJECTIVES, recipe_from, train, training_preview

    preset = args.preset or getattr(get_dataset(args.dataset), args.preset_field)
    if preset not in args.preset_choices:
        raise ValueError(f"the {args.dataset} record names preset {preset!r}, which `minicfg {args.command}` does not "
                         f"train; pass --preset with one of {args.preset_choices}")
    recipe = recipe_from(preset, args.dataset, minutes=args.minutes, train_steps=args.train_steps,
                         p_uncond=args.p_uncond, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                         bf16=args.bf16 or None, compile=args.compile or None,
                         checkpoint_every_s=args.checkpoint_every, objective=args.objective,
                         weighting=args.weighting, density=args.lam_density, log_every=args.log_every,
                         teacher=args.teacher, w_max=args.w_max, snapshot_every=args.snapshot_every)
    t = time.perf_counter()
    try:
        trainer = train(recipe, args.out, resume=args.resume, progress=not args.no_progress,
                        command=_command_line(args), on_sample=None if args.no_preview else training_preview,
                        device=args.device)
    finally:
        teardown()
    if trainer.rank != 0:
        return
    ema = Path(args.out) / "ema.safetensors"
    where = f"on {trainer.device}" + (f" x {trainer.world} processes" if trainer.world > 1 else "")
    print(f"trained {trainer.step} steps in {time.perf_counter() - t:.0f} s {where}; EMA weights: {ema}; "
          + OBJECTIVES[recipe.objective].next_step.format(ema=ema))


def _guidance_options(args) -> dict:
    """The guidance methods' own options that were set on the command line (unset ones stay out)."""
    return {key: getattr(args, key) for key in args.guidance_flags if getattr(args, key) is not None}


def _model_dataset(args) -> str:
    """--dataset, else the data set --checkpoint records, else the default one (mnist)."""
    from .checkpoint import checkpoint_dataset
    from .data import DEFAULT_DATASET

    return args.dataset or checkpoint_dataset(args.checkpoint) or DEFAULT_DATASET


def _cmd_sample(args) -> None:
    from .sample_files import sample_to_file

    options = {**dict(args.option), **_guidance_options(args)}
    out, n = sample_to_file(args.out, args.w, checkpoint=args.checkpoint, dataset=_model_dataset(args),
                            n_per_class=args.n_per_class, seed=args.seed, n_steps=args.n_steps, sampler=args.sampler,
                            guidance=args.guidance, progress=not args.no_progress, device=args.device, **options)
    print(f"wrote {n} samples ({len(args.w)} values of w) to {out}")


def _cmd_evaluate(args) -> None:
    from .evaluator import load_evaluator
    from .metrics import evaluate_report
    from .sample_files import npz_dataset

    dataset = npz_dataset(args.samples, args.dataset)
    evaluator, _ = load_evaluator(args.evaluator, dataset=dataset, device=args.device)
    try:
        report = evaluate_report(args.samples, reference=args.reference, evaluator=evaluator, k=args.k,
                                 disk_cache=args.cache_reference, dataset=dataset,
                                 inception_weights=args.inception_weights)
    except ImportError as err:  # the optional torch-fidelity: the message names the install command
        raise ValueError(str(err)) from err
    print(report)


def _cmd_classify(args) -> None:
    from .zero_shot import classify_report

    print(classify_report(args.images, checkpoint=args.checkpoint, dataset=args.dataset, n_noise=args.n_noise,
                          seed=args.seed, weighting=args.weighting, out=args.out, progress=not args.no_progress,
                          device=args.device))


def _cmd_ema(args) -> None:
    from .posthoc_ema import synthesize

    _, meta = synthesize(args.run, args.sigma_rel, step=args.step, out=args.out)
    info = meta["posthoc_ema"]
    print(f"EMA of sigma_rel {info['sigma_rel']:g} (power exponent {info['gamma']:.2f}) at step {info['step']}, "
          f"rebuilt from {len(info['coefficients'])} stored profiles (relative fit error {info['fit_error']:.4f}): "
          f"{args.out}; sample it with `minicfg sample --checkpoint {args.out} --out samples.png`")


def _cmd_sweep(args) -> None:
    from .sweep import run_sweep

    print(run_sweep(args.out, args.w, checkpoint=args.checkpoint, dataset=_model_dataset(args),
                    n_per_class=args.n_per_class, n_steps=args.n_steps, sampler=args.sampler, seed=args.seed,
                    label=args.label, by=args.by,
                    paper=None if args.paper == "none" else int(args.paper), progress=not args.no_progress,
                    guidance=args.guidance, device=args.device, sampler_options=dict(args.option),
                    **_guidance_options(args)))


def _cmd_assignments_source(args) -> None:
    from .assignments import write_source

    written = write_source(args.notebooks, args.course)
    print(f"wrote {len(written)} assignments to {Path(args.course) / 'source'}: "
          + ", ".join(p.parent.name for p in written))


def _cmd_assignments_build(args) -> None:
    from .assignments import build

    t = time.perf_counter()
    released = build(args.out, args.course)
    print(f"nbgrader generate_assignment wrote {len(released)} student notebooks in {time.perf_counter() - t:.0f} s:")
    print("\n".join(f"  {p}" for p in released))


def _cmd_assignments_grade(args) -> None:
    from .assignments import grade, score_table

    csv_path = Path(args.submissions) / "scores.csv" if args.csv is None else Path(args.csv)
    t = time.perf_counter()
    exercises, rows = grade(args.submissions, args.course, csv_path=csv_path, smoke=not args.full,
                            timeout=args.timeout, feedback=args.feedback, jobs=args.jobs, progress=True)
    print(score_table(exercises, rows))
    for row in rows:
        for assignment, why in row["not_graded"].items():
            print(f"NOT GRADED (scored 0): {assignment} of {row['student']}: {why}", file=sys.stderr)
    print(f"graded {len(rows)} students in {time.perf_counter() - t:.0f} s; scores written to {csv_path}"
          + (f", feedback to {args.feedback}" if args.feedback else ""))


def _cmd_notebooks_run(args) -> None:
    from .notebook_run import find_notebooks, run_notebook

    paths = find_notebooks(args.names, args.notebooks)
    mode = "smoke mode" if args.smoke else "full run"
    for path in paths:
        print(f"{path.name}: executing ({mode}) in {path.resolve().parent} ...", flush=True)
        written, tidied, seconds = run_notebook(path, output_dir=args.output_dir, timeout=args.timeout,
                                                smoke=args.smoke)
        print(f"{path.name}: executed in {seconds:.0f} s; {tidied}; written to {written}", flush=True)


def _cmd_notebooks_tidy(args) -> None:
    from .notebook_run import find_notebooks, tidy_file

    for path in find_notebooks(args.names, args.notebooks):
        print(f"{path}: {tidy_file(path)}")


# -- the parser: every choice comes from a registry --------------------------------------------------
def _registries():
    from . import guidance, samplers
    from .data import DATASETS
    from .train import OBJECTIVES, PRESETS, TrainConfig

    return DATASETS, samplers, guidance, PRESETS, OBJECTIVES, TrainConfig


def _first_line(fn) -> str:
    return (fn.__doc__ or "").strip().splitlines()[0].rstrip(".") if fn.__doc__ else ""


def _add_dataset(p, datasets, of_file: bool = False, of_checkpoint: bool = False) -> None:
    from .data import DEFAULT_DATASET as default

    if of_file:  # the NPZ says which data set its images belong to (minicfg sample writes it)
        p.add_argument("--dataset", choices=list(datasets), default=None,
                       help=f"data set of the images (default: the one the file records, else {default}; a file that "
                       "records another one is refused)")
    elif of_checkpoint:  # a --checkpoint says which data set it was trained on
        p.add_argument("--dataset", choices=list(datasets), default=None,
                       help=f"data set (default: the one --checkpoint was trained on, else {default}; a checkpoint of "
                       "another data set is refused)")
    else:
        p.add_argument("--dataset", choices=list(datasets), default=default, help=f"data set (default {default})")


def _add_device(p) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:INDEX or mps (default: the first available of "
                   "cuda, mps and cpu)")


def _add_sampler_choice(p, samplers) -> None:
    p.add_argument("--sampler", choices=list(samplers.SAMPLERS), default=samplers.DEFAULT_SAMPLER,
                   help="; ".join(f"{name}: {_first_line(fn)}" for name, fn in samplers.SAMPLERS.items())
                   + f" (default {samplers.DEFAULT_SAMPLER})")


def _add_sampling_options(p, samplers, guidance) -> None:
    p.add_argument("--checkpoint", default=None, help="weights file or training folder (default: the shipped model)")
    _add_sampler_choice(p, samplers)
    _add_guidance_options(p, guidance)
    _add_sampler_option_flag(p)
    p.add_argument("--seed", type=int, help="seed of the starting noise, shared by every w")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_sampler_option_flag(p) -> None:
    """``-o KEY=VALUE`` (repeatable): an option of the sampler, read as a Python literal (``minicfg sample`` and
    ``minicfg sweep``)."""
    p.add_argument("--option", "-o", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the sampler, e.g. -o v=0.5 (ancestral) or -o clip_x=None; repeat for several")


def _add_guidance_options(p, guidance) -> None:
    """``--guidance NAME`` from the registry, and a flag for every keyword option of every guidance method."""
    import inspect

    p.add_argument("--guidance", choices=list(guidance.GUIDANCE), default=guidance.DEFAULT_GUIDANCE,
                   help="; ".join(f"{name}: {_first_line(m.builder)}" for name, m in guidance.GUIDANCE.items())
                   + f" (default {guidance.DEFAULT_GUIDANCE})")
    takers = {}  # every keyword option of a guidance method gets a flag of its own, shared by the methods taking it
    for name, method in guidance.GUIDANCE.items():
        for key in method.options:
            takers.setdefault(key, []).append(name)
    flags = list(takers)
    for key, names in takers.items():
        builders = [guidance.GUIDANCE[name].builder for name in names]
        networks = guidance.GUIDANCE[names[0]].networks
        defaults = [inspect.signature(fn).parameters[key].default for fn in builders]
        if key in networks:
            role = networks[key].replace("_", " ")
            what = f"option of --guidance {names[0]}: weights file of the {role} (default: the shipped one)"
        elif len(names) == 1:
            where = f"{builders[0].__module__}.{builders[0].__name__}"
            what = f"option of --guidance {names[0]}: default {defaults[0]!r}; see the docstring of {where}"
        else:  # a flag that several methods share: each one's default
            each = ", ".join(f"{name} (default {default!r})" for name, default in zip(names, defaults, strict=True))
            what = f"option of --guidance {each}; see their docstrings"
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=None if key in networks else _literal,
                       default=None, help=what)
    p.set_defaults(guidance_flags=flags)


def _add_train_options(p: argparse.ArgumentParser, presets: list[str], datasets, preset_field: str | None) -> None:
    _add_dataset(p, datasets)
    p.add_argument("--out", required=True, help="folder for checkpoints, log and samples")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=_positive_float, help="train for about this many minutes")
    budget.add_argument("--train-steps", type=_positive_int, help="train for this many optimizer steps")
    default = (f"the data set's own: {', '.join(f'{getattr(r, preset_field)} for {n}' for n, r in datasets.items())}"
               if preset_field else presets[0])
    p.add_argument("--preset", choices=presets, default=None if preset_field else presets[0],
                   help="recipe (see minicfg.train.PRESETS): " + ", ".join(presets) + f" (default {default})")
    p.set_defaults(preset_field=preset_field, preset_choices=presets)
    _add_device(p)
    p.add_argument("--log-every", type=_positive_int, help="steps between rows of OUT/log.csv (default 50)")
    p.add_argument("--seed", type=int, help="random seed (default 0); a run is reproducible from its seed")
    p.add_argument("--batch-size", type=_positive_int, help="images per step (default 128)")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate (default from the preset)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (slower on CPUs without bf16 units)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slow first steps while it "
                   "compiles; with --bf16, 1.7x the images/s of fp32 on an AMX-BF16 CPU: docs/recipe_mnist.md)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--snapshot-every", type=_positive_int, default=None, metavar="STEPS",
                   help="keep the EMA and two post-hoc EMA profiles every STEPS steps in OUT/snapshots/ (for "
                        "choosing the EMA length after training: minicfg.posthoc_ema)")
    p.add_argument("--checkpoint-every", type=_positive_float, default=60.0,
                   help="seconds between checkpoints (default 60): at most this much work is lost to a crash")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from .checkpoint import ROLES
    from .data import DEFAULT_DATASET

    datasets, samplers, guidance, presets, objectives, TrainConfig = _registries()  # noqa: N806
    default = TrainConfig.objective
    by_objective = {name: [p for p, r in presets.items() if r.get("objective", default) == name] for name in objectives}
    diffusion = [name for name, o in objectives.items() if o.arch == "unet"]  # what `minicfg train` trains
    parser = argparse.ArgumentParser(
        prog="minicfg",
        description="Diffusion guidance on small data: download data, train, sample, evaluate, classify; course "
        "assignments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("download", help="download a data set into $MINICFG_DATA (needs internet)")
    p.add_argument("--dataset", nargs="+", choices=list(datasets), default=[DEFAULT_DATASET],
                   help=f"which data sets to fetch (default: {DEFAULT_DATASET})")
    p.add_argument("--root", default=None, help="data folder (default: $MINICFG_DATA or ~/.cache/minicfg)")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("train", help="train a class-conditional diffusion model with label dropout (CFG)",
                       description="Train with the joint conditional/unconditional objective (paper Alg. 1). "
                       "Checkpoints are written atomically to OUT/checkpoint.safetensors every minute and on "
                       "Ctrl-C; continue an interrupted run with --resume. The EMA weights end in "
                       "OUT/ema.safetensors, a preview grid in OUT/samples.png, the loss in OUT/log.csv.")
    _add_train_options(p, [preset for name in diffusion for preset in by_objective[name]], datasets, "preset")
    from .predictions import DENSITIES, WEIGHTINGS

    p.add_argument("--objective", choices=diffusion, help="what the network predicts (default from the preset): "
                   "eps is the paper's Alg. 1, v and edm are better conditioned (see minicfg.predictions); distill "
                   "trains a guidance-distilled student of --teacher (use it with --preset distill; minicfg.distill)")
    p.add_argument("--teacher", help="--objective distill: the model to distil (default: the shipped model)")
    p.add_argument("--w-max", type=float, help="--objective distill: the student learns w in [0, W_MAX] (default 4)")
    p.add_argument("--weighting", choices=list(WEIGHTINGS), help="loss weighting over lam (default from the preset)")
    p.add_argument("--lam-density", choices=list(DENSITIES), help="density of training lams (default from the preset)")
    p.add_argument("--p-uncond", type=_probability, help="probability of dropping a label to null (default 0.1)")
    p.add_argument("--no-preview", action="store_true", help="do not write OUT/samples.png during training")
    p.set_defaults(func=_cmd_train)

    for command, objectives_, preset_field, help_, description in (
        ("train-classifier", ["noisy_classifier"], None,
         "train the noisy classifier p(c | z_lam) for classifier guidance",
         "Train a classifier of noised images at the log-SNRs the diffusion model sees (Dhariwal & Nichol 2021)"),
        ("train-evaluator", [n for n, o in objectives.items() if o.arch in ROLES["evaluator"]], "evaluator_preset",
         "train the evaluation classifier used by `minicfg evaluate`",
         "Train the clean-image CNN whose features and softmax give the offline metrics (not the noisy guidance "
         "classifier); the measured test accuracy is written beside its weights, in OUT/ema.json"),
    ):
        p = sub.add_parser(command, help=help_, description=description + ", with the same checkpoints, --resume "
                           "and EMA as `minicfg train`. Its EMA weights end in OUT/ema.safetensors.")
        _add_train_options(p, [preset for name in objectives_ for preset in by_objective[name]], datasets,
                           preset_field)
        p.set_defaults(func=_cmd_train, p_uncond=None, no_preview=True, objective=None, weighting=None,
                       lam_density=None, teacher=None, w_max=None)

    p = sub.add_parser("sample", help="draw guided samples into a PNG grid or an NPZ file",
                       description="Sample with guidance of strength w (classifier-free by default: "
                       "eps~ = (1+w) eps(z,c) - w eps(z)). Every panel starts from the same noise. Without "
                       "--checkpoint the shipped weights of --dataset are used.")
    _add_dataset(p, datasets, of_checkpoint=True)
    p.add_argument("--w", type=_w_list, default=[0.0, 1.0, 3.0],
                   help="comma-separated guidance strengths (paper's w; 0 = conditional, -1 = unconditional)")
    p.add_argument("--n-per-class", type=_positive_int, default=8, help="samples per class and w (default 8)")
    p.add_argument("--n-steps", type=_positive_int, default=50, help="sampling steps (default 50)")
    _add_sampling_options(p, samplers, guidance)
    _add_device(p)
    p.add_argument("--out", required=True, help="FILE.png for a grid, FILE.npz for images/labels/w arrays")
    p.set_defaults(func=_cmd_sample, seed=0)

    p = sub.add_parser("evaluate", help="score samples (an NPZ from `minicfg sample`) with offline metrics",
                       description="For each w in SAMPLES.npz: label accuracy, classifier FID, inception score, "
                       "precision and recall, all from the shipped evaluator of --dataset (docs/metrics.md says "
                       "what they can and cannot tell). The data set is the one the file records.")
    p.add_argument("samples", help="NPZ with images (uint8 N x C x H x W), labels and w, from `minicfg sample`")
    _add_dataset(p, datasets, of_file=True)
    p.add_argument("--reference", choices=["test", "train"], default="test",
                   help="real images to compare with (default: the test split)")
    p.add_argument("--evaluator", default=None, help="evaluator weights (default: the shipped ones)")
    p.add_argument("--k", type=_positive_int, default=3, help="neighbours for precision/recall (default 3)")
    p.add_argument("--cache-reference", action="store_true",
                   help="keep the reference features under $MINICFG_DATA/minicfg-cache for later runs")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="also report the standard Inception FID per w, with torch-fidelity (pip install "
                   "\"minicfg[fid]\") and this local weights file (weights-inception-2015-12-05-6726825d.pth; "
                   "never downloaded; docs/metrics.md)")
    _add_device(p)
    p.set_defaults(func=_cmd_evaluate)

    from .zero_shot import DEFAULT_WEIGHTING, ERROR_WEIGHTINGS

    p = sub.add_parser("classify", help="classify images with the diffusion model itself (zero-shot, no classifier)",
                       description="For every image and class, the model's eps-prediction error averaged over K "
                       "(lam, eps) draws shared by all classes; the predicted class is the one of lowest error (Bayes "
                       "with a uniform prior on the variational bound; Li et al. 2023, Clark & Jaini 2023). Prints "
                       "the accuracy when the file has labels. See minicfg.zero_shot and docs/zero_shot.md.")
    p.add_argument("images", help="NPZ with images (uint8 N x C x H x W) and optionally labels, e.g. from "
                   "`minicfg sample --out FILE.npz`")
    _add_dataset(p, datasets, of_file=True)
    p.add_argument("--checkpoint", default=None, help="weights file or training folder (default: the shipped model)")
    p.add_argument("--n-noise", type=_positive_int, default=16,
                   help="(lam, eps) draws per image, shared by the classes (default 16; cost is N x classes x K "
                   "network evaluations)")
    p.add_argument("--weighting", choices=list(ERROR_WEIGHTINGS), default=DEFAULT_WEIGHTING,
                   help="training: lam from the training (cosine) density; elbo: lam uniform, the variational bound "
                   f"(default {DEFAULT_WEIGHTING})")
    p.add_argument("--seed", type=int, default=0, help="seed of the (lam, eps) draws (default 0)")
    p.add_argument("--out", default=None, help="CSV file for each image's label, prediction and class errors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_device(p)
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("ema", help="rebuild an EMA of any length from a run's snapshots (post-hoc EMA)",
                       description="Post-hoc EMA (Karras et al. 2024): from the snapshots a run kept with `minicfg "
                       "train --snapshot-every N`, write the EMA of relative width SIGMA_REL (the standard deviation "
                       "of its average over the steps, as a share of the run; the usual EMA is about 0.09) at any "
                       "stored step. See minicfg.posthoc_ema and docs/recipe_mnist.md.")
    p.add_argument("run", help="training folder (or its snapshots/ folder) written with --snapshot-every")
    p.add_argument("--sigma-rel", type=_positive_float, required=True,
                   help="relative width of the EMA, in (0, 0.289]; e.g. 0.05 short, 0.15 long")
    p.add_argument("--step", type=_positive_int, default=None, help="a stored step (default: the last snapshot)")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors, with its .json)")
    p.set_defaults(func=_cmd_ema)

    p = sub.add_parser("sweep", help="sample and score at several w (and steps): CSV and trade-off figures",
                       description="The paper's trade-off experiment (its Sec. 4, Figs. 4-5): for every w and number "
                       "of sampling steps, sample N-PER-CLASS images per class from the same starting noise and "
                       "score them (docs/metrics.md). Writes OUT/sweep.csv (a row per point, written as each "
                       "finishes; a rerun skips points already there, so an interrupted sweep resumes) and the "
                       "trade-off figures. Sweeps of several models into the same OUT are plotted together.")
    _add_dataset(p, datasets, of_checkpoint=True)
    p.add_argument("--w", type=_w_list, default=[0.0, 0.1, 0.3, 0.5, 1.0, 2.0, 4.0],
                   help="comma-separated guidance strengths (default 0,0.1,0.3,0.5,1,2,4)")
    p.add_argument("--n-per-class", type=_positive_int, default=100,
                   help="samples per class and point (default 100: 1,000 per point)")
    p.add_argument("--n-steps", type=_positive_ints, default=[50],
                   help="sampling steps, one number or a comma-separated list such as 16,32,64 (default 50)")
    _add_sampler_choice(p, samplers)
    _add_sampler_option_flag(p)
    _add_guidance_options(p, guidance)
    p.add_argument("--checkpoint", default=None, help="weights file or training folder (default: the shipped model)")
    p.add_argument("--seed", type=int, default=1, help="seed of the starting noise, shared by every point (default 1)")
    p.add_argument("--label", default=None, help="name of this model in the CSV and plots (default: the checkpoint)")
    p.add_argument("--by", choices=["label", "guidance", "options", "sampler_options", "p_uncond", "n_steps", "seed"],
                   default=None, help="one curve per value of this column (default: the columns among label, guidance, "
                   "options, n_steps, sampler, sampler_options and seed whose values differ between the rows)")
    p.add_argument("--paper", choices=["1", "2", "none"], default="1",
                   help="plot the paper's Table 1 (p_uncond, ImageNet 64) or 2 (steps, ImageNet 128) beside ours")
    p.add_argument("--out", required=True, help="folder for sweep.csv and the figures")
    _add_device(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_sweep)

    _add_assignments(sub)
    _add_notebooks(sub)
    return parser


def _add_notebooks(sub) -> None:
    p = sub.add_parser("notebooks", help="execute the course notebooks in full and tidy their stored progress bars",
                       description="The notebooks' committed outputs come from a full run: `run` executes them "
                       "(smoke mode off, each in its own folder, widget state stored) and tidies them; `tidy` only "
                       "rewrites the progress bars of notebooks already executed (e.g. by jupyter nbconvert "
                       "--execute), whose stored text would otherwise read 0%.")
    commands = p.add_subparsers(dest="notebooks_command", metavar="ACTION", required=True)
    names = dict(nargs="+", metavar="NOTEBOOK",
                 help="notebook numbers such as 07 (NN_*.ipynb in --notebooks), all, or paths of .ipynb files")
    folder = dict(default="notebooks", help="folder of the course's notebooks (default: notebooks)")

    q = commands.add_parser("run", help="execute notebooks in full, tidy their progress bars, write them back",
                            description="Execute each notebook with nbclient as its committed outputs are made: "
                            "MINICFG_SMOKE=0, the notebook's folder as working directory, the widget state stored, "
                            "MINICFG_DATA and the rest of the environment passed on; then tidy its progress bars and "
                            "write it over the original (or into --output-dir) once every cell has run. Heavy "
                            "notebooks take tens of minutes on a CPU.")
    q.add_argument("names", **names)
    q.add_argument("--notebooks", **folder)
    q.add_argument("--output-dir", default=None, metavar="DIR",
                   help="write the executed notebooks into DIR instead of over the originals")
    q.add_argument("--timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="stop a cell after SECONDS (default: no limit)")
    q.add_argument("--smoke", action="store_true", help="run in smoke mode (MINICFG_SMOKE=1) for a quick check")
    q.set_defaults(func=_cmd_notebooks_run)

    q = commands.add_parser("tidy", help="rewrite the stored progress bars of executed notebooks from their widget "
                            "state", description="For each tqdm bar stored as a widget output, write its text as "
                            "the bar ended (from the run's saved widget state in metadata.widgets) instead of its "
                            "first 0% line, and drop the bars tqdm closed (leave=False). Files are changed in place "
                            "only when something changes; running it twice is harmless.")
    q.add_argument("names", **names)
    q.add_argument("--notebooks", **folder)
    q.set_defaults(func=_cmd_notebooks_tidy)


def _add_assignments(sub) -> None:
    p = sub.add_parser("assignments", help="course assignments on nbgrader: course folder, student versions, grading",
                       description="The exercises of notebooks 01-05 as nbgrader assignments (docs/instructors.md).")
    commands = p.add_subparsers(dest="assignments_command", metavar="ACTION", required=True)
    course = dict(default="course", help="the nbgrader course folder (default: course)")

    q = commands.add_parser("source", help="write COURSE/source/<assignment>/ from the notebooks with exercises",
                            description="Copy every notebook that has nbgrader cells into COURSE/source/<its name>/, "
                            "outputs cleared: the course folder's assignments, one per notebook.")
    q.add_argument("--notebooks", default="notebooks", help="folder of the main notebooks (default: notebooks)")
    q.add_argument("--course", **course)
    q.set_defaults(func=_cmd_assignments_source)

    q = commands.add_parser("build", help="student versions of every assignment, by nbgrader generate_assignment",
                            description="Make OUT an nbgrader course folder (config, sources, gradebook) and run "
                            "nbgrader generate_assignment on every assignment: the student versions, solutions "
                            "replaced by raise NotImplementedError(), land in OUT/release/<assignment>/.")
    q.add_argument("--out", required=True, help="new or empty folder for the built course")
    q.add_argument("--course", **course)
    q.set_defaults(func=_cmd_assignments_build)

    q = commands.add_parser("grade", help="autograde collected notebooks (nbgrader autograde) into a score table",
                            description="Autograde SUBMISSIONS/<student>/<assignment>/*.ipynb (the layout of "
                            "nbgrader's submitted/ folder) with nbgrader autograde in a temporary course folder, "
                            "and print the score of every student and exercise; also written as CSV.")
    q.add_argument("submissions", help="folder of STUDENT/ASSIGNMENT/NOTEBOOK.ipynb")
    q.add_argument("--course", **course)
    q.add_argument("--csv", default=None, help="CSV file for the scores (default: SUBMISSIONS/scores.csv)")
    q.add_argument("--full", action="store_true",
                   help="run the submissions in full rather than in smoke mode (slower; the checks are the same)")
    from .assignments import SMOKE_TIMEOUT

    q.add_argument("--timeout", type=int, default=None, metavar="SECONDS",
                   help="interrupt a cell after SECONDS and go on with the next (default: the course config's "
                   f"Execute.timeout, at most {SMOKE_TIMEOUT} s in smoke mode)")
    q.add_argument("--feedback", default=None, metavar="DIR",
                   help="also write nbgrader's HTML feedback to DIR/<student>/<assignment>/<notebook>.html")
    q.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="grade in N processes at once, each in its own copy of the course (default 1)")
    q.set_defaults(func=_cmd_assignments_grade)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError, RuntimeError) as err:
        parser.exit(2, f"minicfg {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "minicfg: interrupted\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
