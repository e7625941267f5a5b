"""The guidance sweep: samples at several w (and numbers of sampling steps), scored and kept as CSV rows.

This is the experiment behind the paper's central result (Ho & Salimans 2022, Sec. 4.1-4.3, Tables 1-2,
Figs. 4-5): as w grows, the Inception Score rises while FID first falls, then rises. :func:`sweep` draws
``n_per_class`` samples per class for every (steps, w) from the same starting noise and scores them with
:func:`minicfg.metrics.evaluate`. With ``csv_path`` every finished point is written at once (atomically),
and a point already in the file with the same settings is read back instead of sampled again, so an
interrupted sweep loses at most the point it was drawing. :func:`paper_results` gives the paper's
published numbers for comparison; :mod:`minicfg.sweep_plots` draws both.
"""

from __future__ import annotations

import csv
import inspect
import io
import math
import time
from contextlib import contextmanager
from functools import partial
from importlib import resources
from pathlib import Path

import torch

from ._checks import check_options, check_w
from .checkpoint import atomic_write_bytes
from .data import DEFAULT_DATASET
from .generate import class_labels, generate
from .guidance import DEFAULT_GUIDANCE, get_guidance
from .metrics import evaluate
from .samplers import DEFAULT_SAMPLER, get_sampler

__all__ = ["FIELDS", "options_text", "count_passes", "sweep", "run_sweep", "read_csv", "write_csv", "paper_results",
           "best_row"]

#: Columns of a sweep CSV: what was sampled (first eleven), then what was measured. ``options`` holds the guidance
#: method's options as ``key=value`` pairs (a network as its weights' fingerprint), defaults included;
#: ``sampler_options`` the sampler options given (``minicfg sweep -o KEY=VALUE``), empty for the sampler's defaults;
#: ``passes`` the network passes per sample, counted (the rows every network was called on, over the samples:
#: 2 per step for CFG, 1 for the conditional model alone), empty in sweeps recorded before it was counted.
FIELDS = ("label", "p_uncond", "train_steps", "guidance", "options", "sampler", "sampler_options", "n_steps", "seed",
          "n", "w", "accuracy", "fid", "inception_score", "precision", "recall", "sample_s", "passes")
#: a point is redone if one of these differs
_KEY = ("label", "guidance", "options", "sampler", "sampler_options", "n_steps", "seed", "n", "w")
_TEXT = ("label", "guidance", "options", "sampler", "sampler_options")
#: values of columns that older sweeps did not write (they were all plain CFG, with the sampler's defaults)
_DEFAULTS = {"guidance": DEFAULT_GUIDANCE, "options": "", "sampler_options": ""}
_INT = ("train_steps", "n_steps", "seed", "n")
_FLOAT = ("p_uncond", "w", "accuracy", "fid", "inception_score", "precision", "recall", "sample_s", "passes")


def _data_lines(text: str) -> list[str]:
    """The lines of a CSV text without blank lines and ``#`` notes."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _parse(row: dict) -> dict:
    out = dict(_DEFAULTS)
    for k, v in row.items():
        if k in _INT:
            out[k] = int(v) if v not in ("", None) else None
        elif k in _FLOAT:
            out[k] = float(v) if v not in ("", None) else math.nan
        else:
            out[k] = _DEFAULTS[k] if k in _DEFAULTS and v in (None, "") else v
    return out


def read_csv(path) -> list[dict]:
    """Rows of a sweep CSV with numbers parsed (empty cells become None or nan). Lines starting with # are notes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep CSV at {path} (write one with `minicfg sweep --out {path.parent}`)")
    reader = csv.DictReader(_data_lines(path.read_text()))
    if reader.fieldnames is None or not {"w", "fid", "inception_score"} <= set(reader.fieldnames):
        raise ValueError(f"{path} is not a sweep CSV: its header must name w, fid and inception_score "
                         f"(got {reader.fieldnames})")
    try:
        return [_parse(row) for row in reader]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} has a malformed row ({err}); delete the row or the file and run again") from err


def write_csv(rows: list[dict], path, fields: list[str] | None = None) -> Path:
    """Write sweep rows (columns ``fields``, default :data:`FIELDS`) atomically: a crash leaves the old file or
    the new one.

    Returns the path written, as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    buf = io.StringIO()
    fields = FIELDS if fields is None else fields
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def _same_point(a: dict, b: dict) -> bool:
    """Whether two rows are the same sweep point; a row that lacks a setting (a hand-made CSV) matches nothing."""
    for k in _KEY:
        x, y = a.get(k), b.get(k)
        if x is None or y is None:
            return False
        if k in _TEXT:
            if str(x) != str(y):
                return False
        elif not math.isclose(float(x), float(y), abs_tol=1e-9):
            return False
    return True


def options_text(options: dict) -> str:
    """Guidance or sampler options as one CSV cell, ``key=value`` pairs in name order; a network is named by its
    weights' fingerprint (``checkpoint.load_model`` sets it), so a sweep with other weights is another point."""
    parts = []
    for key in sorted(options):
        value = options[key]
        if isinstance(value, torch.nn.Module):
            value = f"net:{getattr(value, 'fingerprint', type(value).__name__)}"
        parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def _option_defaults(builder) -> dict:
    """The defaults of a guidance builder's keyword-only options (those that have one other than None)."""
    return {name: p.default for name, p in inspect.signature(builder).parameters.items()
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.default is not None}


@contextmanager
def count_passes(networks):
    """Count the rows every network in ``networks`` is called on (``network(z, ...)`` with z of shape (B, ...)), in
    ``counter[0]``, while the ``with`` block runs."""
    counter = [0]

    def hook(module, args):
        counter[0] += int(args[0].shape[0])

    handles = [net.register_forward_pre_hook(hook) for net in networks]
    try:
        yield counter
    finally:
        for handle in handles:
            handle.remove()


def _check_steps(steps) -> list[int]:
    steps = [steps] if isinstance(steps, (int, float)) else list(steps)
    if not steps or any(not isinstance(t, int) or isinstance(t, bool) or t < 1 for t in steps):
        raise ValueError(f"steps must be positive integers (sampling steps per sample), got {steps}")
    return steps


_say = partial(print, flush=True)  # progress lines reach a log file at once


def sweep(model, ws, n_per_class: int = 100, n_steps=50, sampler: str = DEFAULT_SAMPLER, seed: int = 1,
          label: str = "model", meta: dict | None = None, csv_path=None, progress: bool = False,
          evaluator=None, log=_say, dataset: str = DEFAULT_DATASET, guidance: str = DEFAULT_GUIDANCE,
          options: dict | None = None, sampler_options: dict | None = None) -> list[dict]:
    """Sample and score ``model`` at every w in ``ws`` for every number of sampling steps in ``n_steps``.

    ``guidance`` names the method (:data:`minicfg.guidance.GUIDANCE`, plain CFG by default) and ``options`` its
    options (networks already loaded), so variants are swept on the same noise and metrics as CFG.
    ``sampler_options`` are the sampler's own options (``v`` of the ancestral sampler, ``clip_x``, ...), recorded in
    the column ``sampler_options``.

    Every point starts from the same noise (``seed``), so points differ only by w and steps. ``meta`` (the
    checkpoint metadata from :func:`minicfg.checkpoint.load_model`) fills the columns ``p_uncond`` and
    ``train_steps``. With ``csv_path``, rows of other labels or settings in that file are kept, points
    already there are reused, and each new point is added to the file as soon as it is scored (the file is
    read again just before, so another sweep writing to it at the same time keeps its rows). Returns this
    sweep's rows (columns :data:`FIELDS`), in the order steps, then w.
    """
    ws = list(ws)
    for w in ws:
        check_w(w)
    ws = [float(w) for w in ws]
    all_steps = _check_steps(n_steps)
    if not ws:
        raise ValueError("give at least one w")
    sampler_options = dict(sampler_options or {})
    check_options("sampler", sampler, get_sampler(sampler), sampler_options, ("generator", "callback"))
    options = dict(options or {})
    builder = get_guidance(guidance)
    check_options("guidance", guidance, builder, options)
    both = sorted(set(options) & set(sampler_options))
    if both:
        raise ValueError(f"{', '.join(both)} given both as a guidance option and as a sampler option; give it once")
    recorded = {**_option_defaults(builder), **options}  # what was run, defaults included
    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    labels = class_labels(model.config.num_classes, n_per_class)
    if len(labels) <= 3:
        raise ValueError(f"{len(labels)} samples per point are too few for precision/recall; raise n_per_class")
    train = (meta or {}).get("train", {})
    networks = [model] + [v for v in options.values() if isinstance(v, torch.nn.Module) and v is not model]
    kept = read_csv(csv_path) if csv_path is not None and Path(csv_path).is_file() else []
    rows = []
    for n_steps in all_steps:
        for w in ws:
            point = {"label": label, "p_uncond": train.get("p_uncond"), "train_steps": (meta or {}).get("step"),
                     "guidance": guidance, "options": options_text(recorded), "sampler": sampler,
                     "sampler_options": options_text(sampler_options), "n_steps": n_steps, "seed": seed,
                     "n": len(labels), "w": w}
            done = next((r for r in kept if _same_point(r, point)), None)
            if done is not None:
                rows.append(done)
                log(f"{label}: {guidance} w={w:g}, {n_steps} steps: already in {csv_path}")
                continue
            t = time.perf_counter()
            with count_passes(networks) as passes:
                images = generate(model, labels, w, n_steps=n_steps, sampler=sampler, seed=seed, progress=progress,
                                  guidance=guidance, **options, **sampler_options)
            scores = evaluate(images, labels, evaluator=evaluator, dataset=dataset)
            row = {**point, **{k: scores[k] for k in ("accuracy", "fid", "inception_score", "precision", "recall")},
                   "sample_s": round(time.perf_counter() - t, 1), "passes": passes[0] / len(labels)}
            rows.append(row)
            if csv_path is not None:  # re-read first: another sweep may have added rows meanwhile
                on_disk = read_csv(csv_path) if Path(csv_path).is_file() else []
                write_csv([r for r in on_disk if not _same_point(r, row)] + [row], csv_path)
            log(f"{label}: {guidance} w={w:g}, {n_steps} steps: accuracy {row['accuracy']:.3f}, cFID {row['fid']:.2f}, "
                f"IS {row['inception_score']:.2f}, precision {row['precision']:.3f}, recall {row['recall']:.3f} "
                f"({row['sample_s']:.0f} s)")
    return rows


def best_row(rows: list[dict], key: str = "fid") -> dict:
    """The row with the lowest ``key`` (the best-FID point of a sweep by default)."""
    finite = [r for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    if not finite:
        raise ValueError(f"no row has a finite {key}")
    return min(finite, key=lambda r: r[key])


def paper_results(table: int | None = None) -> list[dict]:
    """The paper's published FID and IS (Ho & Salimans 2022, Table 1: ImageNet 64x64 by ``p_uncond``;
    Table 2: ImageNet 128x128 by sampling steps). Rows: table, dataset, setting, value, w, fid, inception_score.
    """
    if table not in (None, 1, 2):
        raise ValueError(f"the paper has Tables 1 and 2 of FID/IS results, got table={table!r}")
    text = resources.files("minicfg").joinpath("reference/cfg_paper_tables.csv").read_text()
    rows = [{"table": int(r["table"]), "dataset": r["dataset"], "setting": r["setting"], "value": float(r["value"]),
             "w": float(r["w"]), "fid": float(r["fid"]), "inception_score": float(r["inception_score"])}
            for r in csv.DictReader(_data_lines(text))]
    return [r for r in rows if table is None or r["table"] == table]


def run_sweep(out, ws, checkpoint=None, dataset: str = DEFAULT_DATASET, n_per_class: int = 100, n_steps=(50,),
              sampler: str = DEFAULT_SAMPLER, seed: int = 1, label: str | None = None, by=None, paper: int | None = 1,
              progress: bool = False, guidance: str = DEFAULT_GUIDANCE, device=None,
              sampler_options: dict | None = None, **options) -> str:
    """``minicfg sweep``: :func:`sweep` a checkpoint into ``OUT/sweep.csv``, then draw every row of that file.
    The model and the evaluator run on ``device`` (None: the best available, :func:`minicfg.devices.pick_device`).

    ``guidance`` and its ``options`` as for ``minicfg sample``: an option that is a network is a path, or left
    out for the shipped one. ``sampler_options`` go to the sampler (``minicfg sweep -o KEY=VALUE``).

    Returns a one-line summary naming the best point and the files written.
    """
    from .checkpoint import load_model
    from .devices import pick_device
    from .evaluator import load_evaluator
    from .sample_files import load_guidance_networks
    from .sweep_plots import save_sweep_figures

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(device)
    model, meta = load_model(checkpoint, dataset=dataset, device=device)
    options = load_guidance_networks(guidance, options, dataset, device)
    evaluator, _ = load_evaluator(None, dataset=dataset, device=device)
    label = label or (str(checkpoint) if checkpoint else f"shipped {dataset}")
    csv_path = out / "sweep.csv"
    rows = sweep(model, ws, n_per_class=n_per_class, n_steps=list(n_steps), sampler=sampler, seed=seed, label=label,
                 meta=meta, csv_path=csv_path, progress=progress, dataset=dataset, evaluator=evaluator,
                 guidance=guidance, options=options, sampler_options=sampler_options)
    every = read_csv(csv_path)  # this sweep and any earlier ones written to the same folder
    figures = save_sweep_figures(every, out, by=by, paper=None if paper is None else paper_results(paper),
                                 is_max=model.config.num_classes, dataset=dataset)
    best = best_row(rows)
    return (f"best cFID of this sweep: {best['fid']:.2f} at w={best['w']:g} ({best['n_steps']} steps); wrote "
            f"{csv_path} ({len(every)} rows), " + " and ".join(str(f) for f in figures))
