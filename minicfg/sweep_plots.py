"""Figures of a guidance sweep (:mod:`minicfg.sweep`): the trade-off curves, and each metric against w or steps.

On MNIST the Inception Score saturates (it cannot exceed the number of classes, and guided samples reach 9.97 of
10 at w = 1), so the trade-off is drawn as classifier FID against accuracy and against recall; the IS panel is
kept, on a plain axis, to compare the curve's shape with the paper's FID-against-IS figure. Every MNIST axis says
"classifier FID" (computed with the evaluation classifier's features, :mod:`minicfg.metrics`); only the paper's
panels say "FID (Inception)", and the two scales are not comparable.

Built without pyplot (like :func:`minicfg.sample_files.grid_figure`), so they neither change a notebook's backend
nor need closing: leave one as a cell's last expression to show it, or call ``fig.savefig``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .data import DEFAULT_DATASET

__all__ = ["tradeoff_figure", "frontier_figure", "seed_spread", "seed_spreads", "metrics_figure",
           "steps_table_figure", "save_sweep_figures", "group_rows"]

CFID = "classifier FID (lower is better)"
_NAMES = {"fid": CFID, "inception_score": "IS of the evaluation classifier (higher is better)",
          "accuracy": "accuracy (higher is better)", "precision": "precision (higher is better)",
          "recall": "recall (higher is better)"}
_SHORT = {"fid": "classifier FID", "inception_score": "IS", "accuracy": "accuracy", "precision": "precision",
          "recall": "recall"}
PAPER_FID, PAPER_IS = "FID (Inception, lower is better)", "IS (Inception, higher is better)"


def _keys(by) -> tuple[str, ...]:
    return (by,) if isinstance(by, str) else tuple(by)


def group_rows(rows: list[dict], by="label", first_seen: bool = False) -> dict:
    """Rows grouped by the value of ``by``, a column or several (e.g. "label", ("label", "n_steps")).

    Keys are the values (a tuple of them for several columns), in sorted order (with ``first_seen``, in the order
    they first appear in ``rows``); each group is sorted by w.
    """
    keys = _keys(by)
    groups = defaultdict(list)
    for row in rows:
        groups[row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)].append(row)
    try:  # curves in the order of their settings (16 before 32 steps), whatever the order of the rows
        keys = list(groups) if first_seen else sorted(groups)
    except TypeError:  # values of mixed types: keep the order of first appearance
        keys = list(groups)
    return {k: sorted(groups[k], key=lambda r: r["w"]) for k in keys}


_LEGEND_NAMES = {"n_steps": "steps"}  # column names as a reader would say them


def _legend(by, value) -> str:
    keys = _keys(by)
    values = (value,) if len(keys) == 1 else value
    parts = []
    for key, v in zip(keys, values, strict=True):
        shown = f"{v:g}" if isinstance(v, (int, float)) else str(v)
        parts.append(shown if key == "label" else f"{_LEGEND_NAMES.get(key, key)} = {shown}")
    return ", ".join(parts)


def _fid_log(rows: list[dict], fid_scale: str) -> bool:
    """Whether the FID axis is logarithmic: ``"log"``, ``"linear"``, or ``"auto"`` (log only where the FIDs span a
    decade, where a plain axis would squeeze the low end of the U)."""
    if fid_scale not in ("log", "linear", "auto"):
        raise ValueError(f"fid_scale must be 'log', 'linear' or 'auto', got {fid_scale!r}")
    if fid_scale != "auto":
        return fid_scale == "log"
    fids = [r["fid"] for r in rows if r.get("fid") is not None and np.isfinite(r["fid"]) and r["fid"] > 0]
    return bool(fids) and max(fids) / min(fids) >= 10


def _fid_axis(ax, log: bool, axis: str = "y") -> None:
    """A log FID axis (``axis`` "y" or "x") labelled in plain numbers (with its minor ticks where the axis is
    short), or a plain one."""
    if not log:
        ax.autoscale_view()
        return
    getattr(ax, f"set_{axis}scale")("log")
    ax.autoscale_view()
    low, high = getattr(ax, f"get_{axis}lim")()
    which = getattr(ax, f"{axis}axis")
    which.set_major_formatter(_plain)
    which.set_minor_formatter(_plain if high / low < 5 else _plain_minor)  # a short axis labels every tick


def _curves(ax, rows: list[dict], by, x: str, xlabel: str, ylabel: str, title: str, legend: bool = True,
            fid_scale: str = "log") -> None:
    """FID against ``x``, one curve per value of ``by``, points in w order, on a log FID axis by default (the low
    end of the U and its steep rise both stay visible; see :func:`_fid_log` for the others)."""
    log = _fid_log(rows, fid_scale)
    if log:
        ax.set_yscale("log")
    for i, (value, group) in enumerate(group_rows(rows, by).items()):
        xs, ys = [r[x] for r in group], [r["fid"] for r in group]
        (line,) = ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=_legend(by, value))
        if i == 0:  # the w of each point, on the first curve only (the others follow the same order)
            _label_points(ax, xs, ys, [f"w={r['w']:g}" for r in group], line.get_color())
    _fid_axis(ax, log)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7, which="both")
    if legend:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _plain(value, _pos=None) -> str:
    return f"{value:g}"


def _plain_minor(value, _pos=None) -> str:  # label 2, 3, 5 between the decades, which a short log axis needs
    mantissa = value / 10 ** np.floor(np.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 3, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""


def _label_points(ax, xs, ys, texts, color, placed: list | None = None) -> None:
    """Write each point's text beside it, skipping one that would sit on a text already written (by this call, or
    by earlier calls that shared the list ``placed`` of the texts' corners, in fractions of the frame)."""
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    placed = [] if placed is None else placed
    xscale, yscale = ((np.log if get() == "log" else (lambda v: v)) for get in (ax.get_xscale, ax.get_yscale))
    for x, y, text in zip(xs, ys, texts, strict=True):
        fx = (xscale(x) - xscale(x0)) / (xscale(x1) - xscale(x0))
        fy = (yscale(y) - yscale(y0)) / (yscale(y1) - yscale(y0))
        right, top = fx > 0.9, fy > 0.93  # next to the frame's right or top edge: the text goes inwards
        corner = (fx - 0.09 if right else fx, fy - 0.05 if top else fy)  # the text's lower left, about
        if any(abs(corner[0] - px) < 0.09 and abs(corner[1] - py) < 0.05 for px, py in placed):
            continue
        placed.append(corner)
        ax.annotate(text, (x, y), fontsize=6, color=color, xytext=(-3 if right else 3, -2 if top else 2),
                    textcoords="offset points", ha="right" if right else "left", va="top" if top else "bottom")


def tradeoff_figure(rows: list[dict], by="label", paper: list[dict] | None = None,
                    title: str = "MNIST (classifier features)", is_max: float | None = None, fid_scale: str = "log"):
    """The trade-off of a sweep, one curve per value of ``by`` (a column or several), points in w order.

    Top: classifier FID against accuracy (fidelity) and against recall (diversity), the two things guidance
    trades. Below: classifier FID against IS beside the paper's FID against IS (its Figs. 4-5) when ``paper``
    (rows of :func:`minicfg.sweep.paper_results` for one table) is given: compare shapes, not numbers (different
    data, network and feature space). ``is_max`` (the number of classes) marks the ceiling of IS on a plain axis.

    A sweep over sampling steps (``by`` includes "n_steps") has only a few w per step count, and six three-point
    curves do not read; it is drawn as a table instead (:func:`steps_table_figure`). ``fid_scale`` is "log"
    (the default), "linear", or "auto": log only where the classifier FIDs span a decade.
    """
    if "n_steps" in _keys(by):
        return steps_table_figure(rows, by=by, paper=paper, title=title)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 7.4) if paper else (13.5, 3.9), dpi=110)
    axes = fig.subplots(2, 2) if paper else fig.subplots(1, 3)
    axes = list(np.ravel(axes))
    _curves(axes[0], rows, by, "accuracy", _NAMES["accuracy"], CFID, f"{title}: fidelity", fid_scale=fid_scale)
    _curves(axes[1], rows, by, "recall", "recall (higher is better; falls as w grows)", CFID,
            f"{title}: diversity", legend=False, fid_scale=fid_scale)
    _curves(axes[2], rows, by, "inception_score", _NAMES["inception_score"], CFID,
            f"{title}: IS, for the shape", legend=False, fid_scale=fid_scale)
    if is_max is not None:
        ceiling = axes[2].axvline(is_max, color="k", ls=":", lw=1, label=f"IS = {is_max:g}, its maximum")
        axes[2].legend(handles=[ceiling], fontsize=7)
        lo = min(r["inception_score"] for r in rows)
        axes[2].set_xlim(lo - 0.05 * (is_max - lo), is_max + 0.05 * (is_max - lo))
    if paper:
        first = paper[0]
        named = [{**r, r["setting"]: r["value"]} for r in paper]  # e.g. a column "p_uncond" for the legend
        _curves(axes[3], named, first["setting"], "inception_score", PAPER_IS, PAPER_FID,
                f"paper, Table {first['table']} ({first['dataset']}, Inception network)")
    fig.tight_layout()
    return fig


def seed_spread(rows: list[dict], metrics=("accuracy", "recall", "fid")) -> dict[str, float]:
    """How much a point moves with its starting noise: for every setting (label, guidance, options, steps, w)
    swept at two or more seeds, the standard deviation over seeds; the largest over those settings (a difference
    smaller than that is not resolved anywhere on the curve). Classifier FID grows with w, so its spread is relative
    (a fraction of the mean, key ``fid_rel``); the others are absolute. ``settings`` counts the settings used.
    """
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k) for k in ("label", "guidance", "options", "sampler", "n_steps", "n", "w"))].append(r)
    many = [g for g in groups.values() if len({r["seed"] for r in g}) > 1]
    if not many:
        raise ValueError("no setting was swept at two or more seeds (minicfg sweep --seed 2, 3, ...)")
    out = {}
    for m in metrics:
        spreads = [np.std([r[m] for r in g], ddof=1) / (np.mean([r[m] for r in g]) if m == "fid" else 1.0)
                   for g in many]
        out["fid_rel" if m == "fid" else m] = float(np.max(spreads))
    out["settings"] = len(many)
    return out


def seed_spreads(rows: list[dict], by=("guidance", "options")) -> dict:
    """:func:`seed_spread` of each method on its own: a dict from each value of ``by`` (as :func:`group_rows`
    keys it) to that method's spread, for the methods swept at two or more seeds at some point; a method without
    seed repeats has no entry (its spread is not known, so it gets no error bars)."""
    out = {}
    for key, group in group_rows(rows, by, first_seen=True).items():
        try:
            out[key] = seed_spread(group)
        except ValueError:  # no setting of this method was swept at two or more seeds
            continue
    return out


def frontier_figure(rows: list[dict], by=("guidance", "options"), names: dict | None = None,
                    spread: dict | None = None, title: str = "MNIST (classifier features)",
                    zoom_w: float | None = None, zoom_fid: float | None = None):
    """Guidance methods side by side: classifier FID against accuracy (fidelity) and against recall (diversity),
    one curve per value of ``by`` (by default each guidance method with its options), points in w order, each
    labelled with its w. A method that moves the frontier has curves below and to the right of plain CFG's in
    both panels; one that slides along it lies on CFG's curve. ``names`` maps a value of ``by`` to its legend.

    ``spread`` draws one seed standard deviation as error bars: either one :func:`seed_spread` for every curve,
    or (from :func:`seed_spreads`) a dict from each value of ``by`` to that method's own spread, where a method
    missing from it is drawn without error bars. ``zoom_w`` adds a second row of the same two panels holding only
    the points with w <= zoom_w, on a plain FID axis, where the low-w points of several methods crowd together;
    ``zoom_fid`` also cuts that row's FID axis at this value (the curves leave the frame towards points above it).
    """
    from matplotlib.figure import Figure

    groups = group_rows(rows, by, first_seen=True)  # plain CFG's curve first, if its rows come first
    per_method = bool(spread) and all(isinstance(v, dict) or v is None for v in spread.values())
    legend = 0.22 * -(-len(groups) // 2)  # inches for the legend's rows below the panels, two entries a row
    panel_rows = 1 if zoom_w is None else 2
    height = 4.4 * panel_rows + legend
    fig = Figure(figsize=(12.0, height), dpi=110)
    axes = np.atleast_2d(fig.subplots(panel_rows, 2))
    for row_axes, zoom in zip(axes, (False, True)[:panel_rows], strict=True):
        for ax, x, xlabel in ((row_axes[0], "accuracy", _NAMES["accuracy"]),
                              (row_axes[1], "recall", "recall (higher is better; falls as w grows)")):
            if zoom and zoom_fid is not None:  # the frame around the points kept, before they are labelled
                kept = [(k, r) for k, g in groups.items() for r in g
                        if r["w"] <= zoom_w + 1e-9 and r["fid"] <= zoom_fid]
                if not kept:
                    raise ValueError(f"no point has w <= {zoom_w:g} and a classifier FID <= {zoom_fid:g}; "
                                     "raise zoom_fid")
                bars_x = [((spread.get(k) if per_method else spread) or {}).get(x, 0.0) for k, _ in kept]
                xs_kept = [r[x] for _, r in kept]
                pad = 0.05 * (max(xs_kept) - min(xs_kept)) + max(bars_x) or 0.01  # 0.01 if all points coincide
                ax.set_xlim(min(xs_kept) - pad, max(xs_kept) + pad)
                ax.set_ylim(0.9 * min(r["fid"] for _, r in kept), zoom_fid)
            if not zoom:  # before the points are labelled, which place their text on the axis's own scale
                ax.set_yscale("log")
            for key, group in groups.items():
                shown = [r for r in group if not zoom or r["w"] <= zoom_w + 1e-9]
                if not shown:
                    continue
                xs, ys = [r[x] for r in shown], [r["fid"] for r in shown]
                label = (names or {}).get(key, _legend(by, key))
                bars = spread.get(key) if per_method else spread
                if bars:
                    line = ax.errorbar(xs, ys, xerr=bars[x], yerr=[y * bars["fid_rel"] for y in ys], marker="o",
                                       ms=3.5, lw=1.3, elinewidth=0.7, capsize=2, label=label).lines[0]
                else:
                    (line,) = ax.plot(xs, ys, marker="o", ms=3.5, lw=1.3, label=label)
                _label_points(ax, xs, ys, [f"{r['w']:g}" for r in shown], line.get_color())
            _fid_axis(ax, log=not zoom)
            ax.set_xlabel(xlabel, fontsize=9)
            ax.set_ylabel(CFID, fontsize=9)
            ax.tick_params(labelsize=8, which="both")
            ax.grid(alpha=0.3)
    axes[0][0].set_title(f"{title}: fidelity (points labelled with w)", fontsize=10)
    axes[0][1].set_title(f"{title}: diversity", fontsize=10)
    if zoom_w is not None:
        cut = "" if zoom_fid is None else f" and classifier FID <= {zoom_fid:g}"
        for ax in axes[1]:
            ax.set_title(f"zoomed: only w <= {zoom_w:g}{cut}, plain FID axis", fontsize=10)
    note = None
    if per_method:
        missing = [(names or {}).get(k, _legend(by, k)) for k in groups if not spread.get(k)]
        note = "error bars: one standard deviation over starting-noise seeds, each method its own" + (
            f"; no seed repeats, no bars: {', '.join(missing)}" if missing else "")
    elif spread:
        note = "error bars: one standard deviation over starting-noise seeds"
    handles, labels = axes[0][0].get_legend_handles_labels()
    order = [(names or {}).get(k, _legend(by, k)) for k in groups]  # the curves' order, not the artists' kinds
    handles, labels = zip(*sorted(zip(handles, labels, strict=True), key=lambda hl: order.index(hl[1])),
                          strict=True)
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, title=note, title_fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, (0.3 + legend) / height, 1, 1))
    return fig


def steps_table_figure(rows: list[dict], by="n_steps", paper: list[dict] | None = None,
                       metrics=("fid", "accuracy", "recall"), title: str = "MNIST (classifier features)"):
    """A sweep over sampling steps as tables: a row per w (and per other setting in ``by``), a column per step count.

    Each cell shows the value. Its colour says how far it is from the best value of its row: white at the best,
    full colour at 50% above the best FID or 0.05 below the best accuracy or recall, so differences as small as the
    seed noise stay pale. With ``paper`` (Table 2 of :func:`minicfg.sweep.paper_results`) the paper's FID
    (Inception) is drawn the same way, for the w of our rows that the paper has.
    """
    from matplotlib.figure import Figure

    others = tuple(k for k in _keys(by) if k not in ("n_steps", "w"))
    steps = sorted({r["n_steps"] for r in rows})
    row_keys = sorted({tuple(r[k] for k in others) + (r["w"],) for r in rows}, key=lambda t: t[::-1])
    panels = [(f"{title}: {_SHORT[m]}", m, _table(rows, row_keys, others, steps, m)) for m in metrics]
    if paper:
        named = [{**r, "n_steps": int(r["value"])} for r in paper]
        p_steps = sorted({r["n_steps"] for r in named})
        p_ws = sorted({r["w"] for r in named} & {k[-1] for k in row_keys}) or sorted({r["w"] for r in named})
        panels.append((f"paper, Table {paper[0]['table']} ({paper[0]['dataset']})", "paper",
                       _table(named, [(w,) for w in p_ws], (), p_steps, "fid")))
    n_cols = 2 if len(panels) > 2 else len(panels)
    n_rows = -(-len(panels) // n_cols)
    height = 0.95 + 0.33 * max(len(row_keys), 3)
    fig = Figure(figsize=(1.6 + 4.4 * n_cols, 0.3 + height * n_rows), dpi=110)
    axes = np.ravel(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (name, metric, (table, labels, cols)) in zip(axes, panels, strict=False):
        lower_is_better = metric in ("fid", "paper")
        if lower_is_better:  # relative excess over the row's best FID, full colour at +50%
            shade = (table / np.nanmin(table, axis=1, keepdims=True) - 1) / 0.5
        else:  # shortfall below the row's best, full colour at 0.05
            shade = (np.nanmax(table, axis=1, keepdims=True) - table) / 0.05
        ax.imshow(np.clip(shade, 0, 1), cmap="Oranges", vmin=0, vmax=1.4, aspect="auto")
        fmt = "{:.2f}" if lower_is_better else "{:.3f}"
        for (i, j), v in np.ndenumerate(table):
            if np.isfinite(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(cols)), [f"{c:g}" for c in cols], fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("sampling steps", fontsize=8)
        if metric == "paper":
            ax.set_title(f"{name}: {PAPER_FID}", fontsize=8)
        else:
            ax.set_title(f"{name} ({'lower' if lower_is_better else 'higher'} is better)", fontsize=8)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle("a row per w; colour: how far from the best of its row (white: the best; full: FID 50% above it, "
                 "accuracy or recall 0.05 below it)", fontsize=8)
    fig.tight_layout()
    return fig


def _table(rows, row_keys, others, steps, metric):
    """A (rows x steps) array of ``metric``, with the row labels "w = ..." (and the other settings)."""
    table = np.full((len(row_keys), len(steps)), np.nan)
    for r in rows:
        key = tuple(r[k] for k in others) + (r["w"],)
        if key in row_keys and r["n_steps"] in steps:
            table[row_keys.index(key), steps.index(r["n_steps"])] = r[metric]
    labels = [", ".join([_legend(others, k[:-1])] * bool(others) + [f"w = {k[-1]:g}"]) for k in row_keys]
    return table, labels, steps


def _spaced_labels(ax, ticks, min_gap: float = 0.09) -> list[str]:
    """Tick labels with those that would crowd a neighbour left blank (the tick stays): walking left to right, a
    label is written when its tick lies at least ``min_gap`` of the axis' scaled span from the last written one;
    the two ends are always written (the last one displaces a crowding neighbour)."""
    pos = list(ax.xaxis.get_transform().transform(ticks))  # on the axis' scale (symlog or log), not the data
    span = (max(pos) - min(pos)) or 1.0
    kept = []
    for i, p in enumerate(pos):
        if not kept or p - pos[kept[-1]] >= min_gap * span:
            kept.append(i)
    if kept[-1] != len(pos) - 1:  # the last tick was crowded out: it takes the place of the label before it
        if len(kept) > 1:  # (never the first)
            kept.pop()
        kept.append(len(pos) - 1)
    kept = set(kept)
    return [f"{t:g}" if i in kept else "" for i, t in enumerate(ticks)]


_AXIS_NAMES = {"accuracy": "accuracy (fraction of samples)", "fid": "classifier FID",
               "precision": "precision (fraction of samples)", "recall": "recall (fraction of real images)",
               "inception_score": "IS"}


def metrics_figure(rows: list[dict], by="label", metrics=("accuracy", "fid", "precision", "recall"), x: str = "w"):
    """Each metric against ``x`` (w on a symmetric-log axis so that w = 0 shows, or "n_steps" on a log axis),
    one line per value of ``by``. FID here is the classifier FID of the evaluation network."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.7 * len(metrics), 3.0), dpi=110)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for value, group in group_rows(rows, by).items():
            group = sorted(group, key=lambda r: r[x])
            ax.plot([r[x] for r in group], [r[metric] for r in group], marker="o", ms=3, lw=1.2,
                    label=_legend(by, value))
        if x == "w":
            ax.set_xscale("symlog", linthresh=0.1, linscale=0.5)
        else:
            ax.set_xscale("log", base=2)
        ticks = sorted({r[x] for r in rows})
        # step counts are short integers on a log axis: every one is written (50 and 64 sit 9% of 16..256 apart)
        ax.set_xticks(ticks, _spaced_labels(ax, ticks, min_gap=0.05 if x == "n_steps" else 0.09), fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.minorticks_off()
        ax.set_xlabel("sampling steps (log scale)" if x == "n_steps" else x, fontsize=8)
        ax.set_ylabel(_AXIS_NAMES.get(metric, metric), fontsize=8)
        ax.set_title(_NAMES[metric], fontsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # one legend for all panels, below them, off the data
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * ((len(labels) + 3) // 4) + 0.02, 1, 1))
    return fig


def save_sweep_figures(rows: list[dict], out, by=None, paper: list[dict] | None = None,
                       is_max: float | None = None, dataset: str = DEFAULT_DATASET) -> list[Path]:
    """Draw a sweep's rows as ``minicfg sweep`` does; returns the two paths written.

    ``OUT/fid_vs_is.png`` is :func:`tradeoff_figure` (a table for a sweep over steps) and ``OUT/metrics_vs_w.png``
    :func:`metrics_figure` (``metrics_vs_steps.png``, one line per w, for a sweep over steps). One curve per setting:
    by the columns that differ between the rows, unless ``by`` says otherwise. ``is_max`` is the number of classes,
    the ceiling of IS; ``dataset`` names the data set, whose record's ``title`` the figures print.
    """
    from .data import get_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    varies = [c for c in ("label", "guidance", "options", "n_steps", "sampler", "sampler_options", "seed", "w")
              if len({r.get(c) for r in rows}) > 1]
    by = by or [c for c in varies if c != "w"] or "label"
    x, x_by = ("n_steps", [c for c in varies if c != "n_steps"] or "label") if "n_steps" in varies else ("w", by)
    paths = [out / "fid_vs_is.png", out / f"metrics_vs_{'steps' if x == 'n_steps' else x}.png"]
    title = f"{get_dataset(dataset).title} (classifier features)"
    tradeoff_figure(rows, by=by, paper=paper, is_max=is_max, title=title).savefig(paths[0])
    metrics_figure(rows, by=x_by, x=x).savefig(paths[1])
    return paths
