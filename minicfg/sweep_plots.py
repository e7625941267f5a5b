"""Figures of a guidance sweep (:mod:`minicfg.sweep`): FID against IS, and each metric against w.

Built without pyplot (like :func:`minicfg.sampling.grid_figure`), so they neither change a notebook's backend
nor need closing: leave one as a cell's last expression to show it, or call ``fig.savefig``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

__all__ = ["tradeoff_figure", "metrics_figure", "group_rows"]

_NAMES = {"fid": "FID (lower is better)", "inception_score": "IS (higher is better)", "accuracy": "accuracy",
          "precision": "precision", "recall": "recall"}


def _keys(by) -> tuple[str, ...]:
    return (by,) if isinstance(by, str) else tuple(by)


def group_rows(rows: list[dict], by="label") -> dict:
    """Rows grouped by the value of ``by``, a column or several (e.g. "label", ("label", "steps")).

    Keys are the values (a tuple of them for several columns), in sorted order; each group is sorted by w.
    """
    keys = _keys(by)
    groups = defaultdict(list)
    for row in rows:
        groups[row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)].append(row)
    try:  # curves in the order of their settings (16 before 32 steps), whatever the order of the rows
        keys = sorted(groups)
    except TypeError:  # values of mixed types: keep the order of first appearance
        keys = list(groups)
    return {k: sorted(groups[k], key=lambda r: r["w"]) for k in keys}


def _legend(by, value) -> str:
    keys = _keys(by)
    values = (value,) if len(keys) == 1 else value
    parts = []
    for key, v in zip(keys, values, strict=True):
        shown = f"{v:g}" if isinstance(v, (int, float)) else str(v)
        parts.append(shown if key == "label" else f"{key} = {shown}")
    return ", ".join(parts)


def _curves(ax, rows: list[dict], by, title: str) -> None:
    for i, (value, group) in enumerate(group_rows(rows, by).items()):
        x = [r["inception_score"] for r in group]
        y = [r["fid"] for r in group]
        (line,) = ax.plot(x, y, marker="o", ms=3, lw=1.2, label=_legend(by, value))
        if i == 0:  # the w of each point, on the first curve only (the others follow the same order)
            for r in group:
                ax.annotate(f"{r['w']:g}", (r["inception_score"], r["fid"]), fontsize=6, color=line.get_color(),
                            xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel(_NAMES["inception_score"])
    ax.set_ylabel(_NAMES["fid"])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _stretch_towards(ax, is_max: float, values) -> None:
    """An IS axis on which the distance to ``is_max`` is logarithmic, so points near the maximum separate."""
    def forward(x):
        return -np.log10(np.clip(is_max - np.asarray(x, dtype=float), 1e-4, None))

    def inverse(y):
        return is_max - 10.0 ** (-np.asarray(y, dtype=float))

    ax.set_xscale("function", functions=(forward, inverse))
    lo = min(values)
    ticks = [t for t in (1, 2, 5, 8, 9, 9.5, 9.8, 9.9, 9.95, 9.98, 9.99) if lo - 0.5 <= t * is_max / 10 < is_max]
    ax.set_xticks([t * is_max / 10 for t in ticks], [f"{t * is_max / 10:g}" for t in ticks], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel(f"IS (higher is better; the axis stretches towards its maximum {is_max:g})")


def tradeoff_figure(rows: list[dict], by="label", paper: list[dict] | None = None,
                    title: str = "MNIST (classifier features)", is_max: float | None = None):
    """FID against IS (the paper's Figs. 4-5): one curve per value of ``by`` (a column or several), points in w order.

    With ``paper`` (rows of :func:`minicfg.sweep.paper_results` for one table) a second panel shows the
    published curves beside ours: compare shapes, not numbers (different data, network and feature space).
    IS cannot exceed the number of classes; with ``is_max`` (e.g. 10 for MNIST) our IS axis is stretched
    logarithmically towards it, so that the points of large w, all close to the maximum, stay apart.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5 if paper else 5.0, 3.8), dpi=110)
    axes = fig.subplots(1, 2 if paper else 1, squeeze=False)[0]
    _curves(axes[0], rows, by, title)
    if is_max is not None:
        _stretch_towards(axes[0], is_max, [r["inception_score"] for r in rows])
    if paper:
        first = paper[0]
        named = [{**r, r["setting"]: r["value"]} for r in paper]  # e.g. a column "p_uncond" for the legend
        _curves(axes[1], named, first["setting"], f"paper, Table {first['table']} ({first['dataset']}, Inception)")
    fig.tight_layout()
    return fig


def metrics_figure(rows: list[dict], by="label", metrics=("accuracy", "fid", "precision", "recall"), x: str = "w"):
    """Each metric against ``x`` (w on a symmetric-log axis so that w = 0 shows, or "steps" on a log axis),
    one line per value of ``by``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.6 * len(metrics), 2.9), dpi=110)
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
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("sampling steps" if x == "steps" else x)
        ax.set_title(_NAMES[metric], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
