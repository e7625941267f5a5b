"""The guidance frontier over seeds (issue 31): a sweep's rows summed up over starting-noise seeds, the trade-off
figure with each point's seed spread, and a verdict per method: does it move CFG's frontier or slide along it?

:func:`seed_summary` groups the rows of a sweep CSV (:mod:`minicfg.sweep`, seeds 1, 2, 3 of every point) by
everything but the seed, :func:`frontier_seeds_figure` draws accuracy and recall against classifier FID with one
seed standard deviation as error bars in both axes, and :func:`verdicts` compares every method with the baseline
(plain CFG): behind where some point of CFG's curve dominates it, ahead where it dominates CFG at the same
classifier FID. The figure helpers are :mod:`minicfg.sweep_plots`'s.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_bytes
from .guidance import DEFAULT_GUIDANCE
from .sweep_plots import _NAMES, CFID, _fid_axis, _label_points, _legend, group_rows

__all__ = ["SETTING", "METHOD", "METRICS", "SUMMARY_FIELDS", "seed_summary", "write_summary", "methods",
           "method_names", "best_point", "baseline_at", "curve", "verdicts", "zoom_box", "frontier_seeds_figure"]

#: the columns a summary point is grouped by: everything that was sampled, but the seed
SETTING = ("label", "guidance", "options", "sampler", "sampler_options", "n_steps", "n", "w")
#: a method is a point's settings but w: the curve through its w
METHOD = SETTING[:-1]
#: the measured columns summed up over seeds
METRICS = ("accuracy", "fid", "precision", "recall", "inception_score")
#: columns of :func:`seed_summary`'s rows (and of summary.csv)
SUMMARY_FIELDS = SETTING + ("n_seeds", "seeds") + tuple(f"{m}_{s}" for m in METRICS for s in ("mean", "sd")) + (
    "passes",)
#: a method's point beats the baseline when the difference exceeds this many combined seed standard deviations
FACTOR = 2.0
#: ... and it loses nothing when its mean is not more than this many combined spreads worse (0: no loss at all)
TOLERANCE = 0.0
_LOWER_IS_BETTER = {"fid"}
_COMPARED = ("fid", "accuracy", "recall")


def _number(value) -> float:
    """A CSV cell as a float: empty or missing is nan (``passes`` reaches here as text from ``sweep.read_csv``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{value!r} is not a number; fix or empty that cell of the sweep CSV") from err


def seed_summary(rows: list[dict]) -> list[dict]:
    """Sweep rows summed up over seeds: one row per setting (:data:`SETTING`: label, guidance, options, sampler,
    sampler_options, n_steps, n, w), with ``n_seeds``, ``seeds`` (as text, "1 2 3"), and for each of
    :data:`METRICS` its mean over the seeds (``accuracy_mean``, ...) and sample standard deviation (``_sd``,
    ddof = 1). A setting swept at a single seed keeps its mean, its ``_sd`` is nan (no spread is known; such a
    point gets no error bars and no verdict) and ``n_seeds`` is 1. ``passes`` (network passes per sample) is the
    mean of the rows that recorded it, nan where none did. Points come in the order their method first appears,
    each method's in w order. Two rows of one setting with the same seed are a ValueError (a CSV merged twice).
    """
    if not rows:
        raise ValueError("no sweep rows to sum up (is the sweep CSV empty?)")
    missing = sorted({k for r in rows for k in SETTING + ("seed",) + METRICS if k not in r})
    if missing:
        raise ValueError(f"sweep rows lack the columns {', '.join(missing)}: give rows of minicfg.sweep.read_csv")
    out = []
    for key, group in group_rows(rows, SETTING, first_seen=True).items():
        seeds = [r["seed"] for r in group]
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        point = dict(zip(SETTING, key, strict=True))
        if twice:
            raise ValueError(f"seed {', '.join(map(str, twice))} appears more than once for {point}; remove the "
                             "repeated rows")
        point["n_seeds"], point["seeds"] = len(group), " ".join(str(s) for s in sorted(seeds))
        for m in METRICS:
            values = np.array([_number(r[m]) for r in group])
            point[f"{m}_mean"] = float(np.mean(values))
            point[f"{m}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        passes = [p for p in (_number(r.get("passes")) for r in group) if math.isfinite(p)]
        point["passes"] = float(np.mean(passes)) if passes else math.nan
        out.append(point)
    order = {m: i for i, m in enumerate(methods(out))}
    return sorted(out, key=lambda p: (order[tuple(p[k] for k in METHOD)], p["w"]))


def write_summary(summary: list[dict], path) -> Path:
    """Write :func:`seed_summary`'s rows as CSV (columns :data:`SUMMARY_FIELDS`, nan as an empty cell)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for point in summary:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in point.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def methods(summary: list[dict]) -> dict[tuple, list[dict]]:
    """Summary points by method (:data:`METHOD`: the setting but w), in order of first appearance, each by w."""
    return group_rows(summary, METHOD, first_seen=True)


def method_names(keys) -> dict[tuple, str]:
    """A short legend for each method key: the guidance and its options (a network's fingerprint left out), and
    those other columns of :data:`METHOD` where the method differs from the most common value among the methods (the
    label telling two models apart, the steps, ...)."""
    keys = list(keys)
    differ = [i for i, k in enumerate(METHOD) if k not in ("guidance", "options") and len({m[i] for m in keys}) > 1]
    usual = {i: Counter(m[i] for m in keys).most_common(1)[0][0] for i in differ}  # named only where a key differs
    names = {}
    for key in keys:
        options = " ".join(t for t in str(key[2]).split() if "=net:" not in t)  # a network's fingerprint says little
        name = key[1] + (f" ({options})" if options else "")
        extra = [_legend(METHOD[i], key[i]) for i in differ if key[i] != usual[i]]
        names[key] = name + (f", {', '.join(extra)}" if extra else "")
    return names


def best_point(points: list[dict]) -> dict:
    """The point of lowest mean classifier FID among a method's summary points."""
    finite = [p for p in points if math.isfinite(p["fid_mean"])]
    if not finite:
        raise ValueError("no point has a finite classifier FID")
    return min(finite, key=lambda p: p["fid_mean"])


def _branches(points: list[dict]) -> dict[str, list[dict]]:
    """The baseline's curve split at its best-FID point into the two sides of its U, each ordered outwards from
    that point: "low w" (towards w = 0: more recall) and "high w" (more accuracy); both hold the best point."""
    ordered = sorted(points, key=lambda p: p["w"])
    i = ordered.index(best_point(ordered))
    return {"low w": ordered[i::-1], "high w": ordered[i:]}


def baseline_at(points: list[dict], fid: float) -> dict[str, dict]:
    """The baseline's mean and standard deviation of every compared metric at classifier FID ``fid``, on each side
    of its U (see :func:`verdicts`): a dict from "low w" and "high w" to ``{metric: (mean, sd), "inside": bool,
    "w": ...}`` (``w`` the pair of w of the segment interpolated, or the w of the point used).

    Along each side, walking out from the best-FID point, the first segment between two neighbouring w whose FIDs
    bracket ``fid`` is interpolated linearly in log FID (means and standard deviations alike); ``inside`` is
    False where no segment brackets it, and the values are those of the side's point nearest in FID (its best
    point below the curve's lowest FID, its far end above the side's highest).
    """
    if not points:
        raise ValueError("the baseline has no points")
    if not (fid > 0 and math.isfinite(fid)):
        raise ValueError(f"a classifier FID must be positive and finite, got {fid}")
    out = {}
    for side, branch in _branches(points).items():
        found = None
        for a, b in zip(branch, branch[1:], strict=False):
            lo, hi = sorted((math.log(a["fid_mean"]), math.log(b["fid_mean"])))
            if lo <= math.log(fid) <= hi:
                t = 0.0 if hi == lo else (math.log(fid) - math.log(a["fid_mean"])) / (
                    math.log(b["fid_mean"]) - math.log(a["fid_mean"]))
                found = {m: tuple((1 - t) * a[f"{m}_{s}"] + t * b[f"{m}_{s}"] for s in ("mean", "sd"))
                         for m in _COMPARED}
                found["fid"] = (fid, found["fid"][1])  # exactly the FID asked (log interpolation is not linear)
                found["inside"], found["w"] = True, (a["w"], b["w"])
                break
        if found is None:
            end = min(branch, key=lambda p: abs(math.log(p["fid_mean"]) - math.log(fid)))
            found = {m: (end[f"{m}_mean"], end[f"{m}_sd"]) for m in _COMPARED}
            found["inside"], found["w"] = False, end["w"]
        out[side] = found
    return out


def _spread(metric: str, sd_a, sd_b, n):
    """The combined seed spread ``sqrt(sd_a^2 + sd_b^2)``; for accuracy and recall (fractions) at least ``1 / n``,
    one sample of the ``n`` drawn: where both are at 1.000 over every seed (MNIST at large w) the sds are 0, and
    a single sample more or less would otherwise count as a difference."""
    spread = np.hypot(sd_a, sd_b)
    return np.maximum(spread, 1.0 / n) if metric in ("accuracy", "recall") and n else spread


def _compare(point: dict, ref: dict, factor: float) -> dict:
    """One point against one reference: differences (method minus baseline; better positive) and spreads."""
    diff, spread, better, worse = {}, {}, [], []
    for m in _COMPARED:
        d = point[f"{m}_mean"] - ref[m][0]
        d = -d if m in _LOWER_IS_BETTER else d
        s = _spread(m, point[f"{m}_sd"], ref[m][1], point["n"])
        diff[m], spread[m] = d, s
        if d > factor * s:
            better.append(m)
        elif d < -factor * s:
            worse.append(m)
    # distance in units of the spread: the nearer side of the baseline's U is the one compared with
    distance = math.sqrt(sum((diff[m] / spread[m]) ** 2 for m in _COMPARED if spread[m] > 0))
    dominates = bool(better) and all(diff[m] >= -TOLERANCE * spread[m] for m in _COMPARED)
    dominated = bool(worse) and all(diff[m] <= TOLERANCE * spread[m] for m in _COMPARED)
    return {"diff": diff, "spread": spread, "better": better, "worse": worse, "distance": distance,
            "dominates": dominates, "dominated": dominated}


def curve(points: list[dict], per_segment: int = 50) -> dict[str, np.ndarray]:
    """The baseline's curve through its w, the mean over seeds: neighbouring w joined by ``per_segment`` steps,
    linear in log FID, accuracy and recall (and in their standard deviations and w). A dict of arrays: ``w``,
    ``{metric}_mean`` and ``{metric}_sd`` for classifier FID, accuracy and recall."""
    ordered = sorted(points, key=lambda p: p["w"])
    if len(ordered) == 1:
        return {k: np.array([ordered[0][k]]) for k in ["w"] + [f"{m}_{x}" for m in _COMPARED for x in ("mean", "sd")]}
    t = np.linspace(0.0, 1.0, per_segment + 1)[:-1]
    out = {}
    for k in ["w"] + [f"{m}_{x}" for m in _COMPARED for x in ("mean", "sd")]:
        values = np.array([p[k] for p in ordered], dtype=float)
        values = np.log(values) if k == "fid_mean" else values
        joined = np.concatenate([(1 - t) * a + t * b for a, b in zip(values[:-1], values[1:], strict=True)]
                                + [values[-1:]])
        out[k] = np.exp(joined) if k == "fid_mean" else joined
    return out


def _curve_dominates(line: dict[str, np.ndarray], point: dict, factor: float, n) -> tuple[np.ndarray, np.ndarray]:
    """Which points of the curve dominate ``point`` (means and sds as ``{metric}_mean``, ``{metric}_sd``), and by
    how many spreads summed."""
    better = np.zeros(len(line["w"]), dtype=bool)  # the curve better than the point, beyond the spread
    worse = np.zeros_like(better)
    margin = np.zeros(len(line["w"]))
    for m in _COMPARED:
        d = line[f"{m}_mean"] - point[f"{m}_mean"]
        d = -d if m in _LOWER_IS_BETTER else d
        spread = _spread(m, line[f"{m}_sd"], point[f"{m}_sd"], n)
        better |= d > factor * spread
        worse |= d < -TOLERANCE * spread
        margin += np.where(spread > 0, d / np.where(spread > 0, spread, 1.0), 0.0)
    return better & ~worse, margin


def _dominated_by(point: dict, line: dict[str, np.ndarray], factor: float, refs=()) -> dict | None:
    """A point of the baseline's curve that dominates ``point``: better beyond ``factor`` spreads on some metric,
    a mean no worse on any (:data:`TOLERANCE`), and not dominating the baseline's own points ``refs`` (at the same
    FID) as well: where the baseline is dominated there too, the point lies on it. Of several, the one ahead by
    most spreads summed; None if none."""
    dominating, margin = _curve_dominates(line, point, factor, point["n"])
    for ref in refs:
        own = {f"{m}_{x}": ref[m][i] for m in _COMPARED for i, x in enumerate(("mean", "sd"))}
        dominating &= ~_curve_dominates(line, own, factor, point["n"])[0]
    known = np.all([np.isfinite(line[f"{m}_sd"]) for m in _COMPARED], axis=0)
    hits = np.flatnonzero(dominating & known)
    if not len(hits):
        return None
    i = hits[np.argmax(margin[hits])]
    return {"w": float(line["w"][i]), **{m: float(line[f"{m}_mean"][i]) for m in _COMPARED}}


#: columns a method and its baseline share, unless the baseline's selector fixes them: sampler and steps
_MATCH = ("sampler", "sampler_options", "n_steps", "n")


def _baselines(method_map: dict, baseline) -> dict[tuple, tuple | None]:
    """Each method's baseline: of the methods ``baseline`` selects, the one swept with the same sampler, sampler
    options, steps and n (those columns the selector does not name), of the same label where several are; None
    where there is none."""
    wanted = {"guidance": baseline} if isinstance(baseline, str) else dict(baseline)
    unknown = sorted(set(wanted) - set(METHOD))
    if unknown:
        raise ValueError(f"baseline selects by {unknown}, which are not method columns {METHOD}")
    found = [k for k in method_map if all(str(k[METHOD.index(c)]) == str(v) for c, v in wanted.items())]
    if not found:
        raise ValueError(f"no rows of the baseline {wanted} in the sweep (it has the guidance methods "
                         f"{sorted({k[1] for k in method_map})}, labels {sorted({k[0] for k in method_map})}); "
                         "sweep it, or name another baseline")
    match = [METHOD.index(c) for c in _MATCH if c not in wanted]
    out = {}
    for key in method_map:
        same = [b for b in found if all(b[i] == key[i] for i in match)]
        if len(same) > 1:
            same = [b for b in same if b[0] == key[0]] or same
        if len(same) > 1:
            raise ValueError(f"the baseline {wanted} matches {len(same)} methods for {key} "
                             f"({', '.join(map(str, same))}); select one, e.g. baseline={{'guidance': "
                             f"'{DEFAULT_GUIDANCE}', 'label': ...}}")
        out[key] = same[0] if same else None
    return out


def verdicts(summary: list[dict], baseline=DEFAULT_GUIDANCE, factor: float = FACTOR) -> dict[tuple, dict]:
    """For every method but the baseline: does it move the baseline's frontier, lie behind it, or slide along it?

    The rule, on classifier FID, accuracy and recall, each point's mean and sample standard deviation over seeds.
    One value *beats* another where it is better by more than ``factor`` (2 by default) times the combined
    spread ``sqrt(sd_method^2 + sd_baseline^2)`` (for accuracy and recall at least 1/n, one sample of n); a point
    *dominates* another where it beats it on some metric and its mean is no worse on any (:data:`TOLERANCE`).
    The baseline's curve is :func:`curve` (its mean over seeds through its w).

    1. A method's point is "behind" if some point of the baseline's curve dominates it (the baseline reaches
       a lower FID, more accuracy or more recall without giving up the others): its point at the same FID
       (step 2), or one of the curve's points that does not dominate the baseline's own points at that FID (or
       nearest to it) as well (at w = 3, CFG's w = 1 dominates CFG's own w = 3 on MNIST, accuracy being 1.000
       at both: a method at CFG's w = 3 point lies on CFG's curve, not behind it).
    2. Otherwise the point is compared with the baseline at the same classifier FID (:func:`baseline_at`:
       interpolated in log FID on each side of the U that FID makes in w; where the FID lies outside a side's
       range, that side's nearest point, and FID itself is then compared too). It is "ahead" if it dominates
       the baseline's point there on either side (so it reaches, at the same FID, more accuracy or recall
       than the baseline, and nothing of the baseline's curve does better); else "trades" if, against the side
       nearer to it in spreads, it beats the baseline on one metric and loses on another; else "within".

    Step 1 keeps a method whose FID is merely worse from being called ahead because, at its own (worse) FID,
    the baseline is at a larger w with less recall. A point without a spread (one seed, or a baseline point of
    one seed at that FID) gets "one seed" and no call. The method's verdict: "moves the frontier" if a point is
    ahead and none behind; "behind CFG's frontier" if a point is behind and none ahead; "ahead at some w, behind
    at others" if both; "along CFG's frontier (within the seed spread)" if its points are within the spread or
    trade; "not decided (one seed)" if no point has a call. The spread of FID is not carried into the
    interpolated accuracy and recall. ``baseline`` is a guidance name or a dict of :data:`METHOD` columns; each
    method is compared with the selected method swept with its sampler, sampler options, steps and n (those of
    these the dict does not name; of its own label where there are several), and is "not decided" without one.

    Returns a dict from each method key (:data:`METHOD`'s values) to ``{"name", "verdict", "points", "best",
    "baseline", "baseline_best", "factor"}`` (``baseline`` the name of the method compared with): ``points``
    one dict per w (its means and sds; ``dominated_by``, the baseline's curve point that dominates it, or None;
    ``side`` compared at the same FID, the baseline's values there,
    ``diff`` (method minus baseline, better positive), ``spread``, ``better``, ``worse``; and ``call``);
    ``best`` the method's best-FID summary point and ``baseline_best`` the baseline's.
    """
    if not summary:
        raise ValueError("no summary points: give seed_summary(rows) of a sweep")
    if factor <= 0:
        raise ValueError(f"factor must be positive (how many combined seed spreads count), got {factor}")
    by_method = methods(summary)
    base_of = _baselines(by_method, baseline)
    names = method_names(by_method)
    out = {}
    for key, points in by_method.items():
        base_key = base_of[key]
        if base_key == key:  # a baseline is not judged against itself
            continue
        if base_key is None:
            shared = ", ".join(f"{c} {key[METHOD.index(c)]}" for c in _MATCH)
            out[key] = {"name": names[key], "verdict": f"not decided (no baseline swept with {shared})",
                        "points": [], "best": best_point(points), "baseline_best": None, "baseline": None,
                        "factor": factor}
            continue
        base = by_method[base_key]
        line = curve(base)
        base_name = "CFG" if base_key[1] == DEFAULT_GUIDANCE else names[base_key]
        called = []
        for p in points:
            refs = baseline_at(base, p["fid_mean"])
            comparisons = {side: _compare(p, ref, factor) for side, ref in refs.items()}
            known = {s: c for s, c in comparisons.items() if all(math.isfinite(v) for v in c["spread"].values())}
            entry = {"w": p["w"], "n_seeds": p["n_seeds"],
                     **{f"{m}_{s}": p[f"{m}_{s}"] for m in _COMPARED for s in ("mean", "sd")}}
            if not known:  # no spread: the method's point, or the baseline's points there, have one seed
                whose = "this point" if p["n_seeds"] < 2 else "the baseline's points at this FID"
                entry.update(dominated_by=None, side=None, baseline=None, call=f"one seed ({whose})")
                called.append(entry)
                continue
            same_fid = [s for s in known if refs[s]["inside"]]  # the baseline's own points at this FID
            dominated = next(({"w": refs[s]["w"], **{m: refs[s][m][0] for m in _COMPARED}}
                              for s in same_fid if known[s]["dominated"]), None) or _dominated_by(
                p, line, factor, [refs[s] for s in known])  # its nearest point where none is at this FID
            beaten = [s for s, c in known.items() if c["dominates"]]
            side = min(beaten or known, key=lambda s: known[s]["distance"])
            c = known[side]
            if dominated is not None:
                call = "behind"
            elif beaten:
                call = "ahead"
            else:
                call = "trades" if c["better"] and c["worse"] else "within"
            entry.update(dominated_by=dominated, side=side, baseline=refs[side], **c, call=call)
            called.append(entry)
        calls = [e["call"] for e in called]
        if "ahead" in calls and "behind" in calls:
            verdict = "ahead at some w, behind at others"
        elif "ahead" in calls:
            verdict = "moves the frontier"
        elif "behind" in calls:
            verdict = f"behind {base_name}'s frontier"
        elif all(c.startswith("one seed") for c in calls):
            verdict = "not decided (one seed)"
        else:
            verdict = f"along {base_name}'s frontier (within the seed spread)"
        out[key] = {"name": names[key], "verdict": verdict, "points": called, "best": best_point(points),
                    "baseline_best": best_point(base), "baseline": names[base_key], "factor": factor}
    return out


def zoom_box(summary: list[dict], zoom: float = 1.5) -> tuple[tuple[float, float], tuple[float, float]]:
    """The crowded corner of the figure: ((FID low, FID high), (accuracy low, accuracy high)).

    It holds every method's best-FID point whose FID is within a factor ``zoom`` of the lowest best FID, with
    one seed standard deviation around each (a method whose best FID is further off is left out, so one poor
    method does not stretch the box over the whole figure), and above them every other point inside that FID
    range (the points of lower accuracy there, at small w, are left out: they do not crowd); 15% of margin in
    log FID and 10% in accuracy.
    """
    if zoom < 1:
        raise ValueError(f"zoom is a factor on the lowest FID, at least 1, got {zoom}")
    bests = [best_point(points) for points in methods(summary).values()]
    lowest = min(b["fid_mean"] for b in bests)
    kept = [b for b in bests if b["fid_mean"] <= zoom * lowest]
    sd = lambda p, m: p[f"{m}_sd"] if math.isfinite(p[f"{m}_sd"]) else 0.0  # noqa: E731
    f0 = min(b["fid_mean"] - sd(b, "fid") for b in kept)
    f1 = max(b["fid_mean"] + sd(b, "fid") for b in kept)
    f0, f1 = max(f0, 0.5 * min(b["fid_mean"] for b in kept)) / 1.15, f1 * 1.15
    inside = [p for p in summary if f0 <= p["fid_mean"] <= f1] + kept
    a0 = min(b["accuracy_mean"] - sd(b, "accuracy") for b in kept)
    a1 = max(p["accuracy_mean"] + sd(p, "accuracy") for p in inside)
    pad = 0.1 * (a1 - a0) or 0.005
    return (f0, f1), (a0 - pad, a1 + pad)


_MARKERS = "osD^vP*Xh<>p"


def _draw(ax, by_method, names, y, inside=None) -> None:
    """Each method's curve of ``y`` against classifier FID, error bars one seed sd in both axes, and w written
    (once every curve is drawn and the frame is final): at each method's first, last and best-FID point, or
    (with ``inside``, a frame's test) at every point in it; a text that would sit on another is left out."""
    colors = {}
    for i, (key, points) in enumerate(by_method.items()):
        xs, ys = [p["fid_mean"] for p in points], [p[f"{y}_mean"] for p in points]
        bars = [np.nan_to_num([p[f"{m}_sd"] for p in points]) for m in ("fid", y)]
        colors[key] = ax.errorbar(xs, ys, xerr=bars[0], yerr=bars[1], marker=_MARKERS[i % len(_MARKERS)], ms=4,
                                  lw=1.2, elinewidth=0.7, capsize=2, color=f"C{i % 10}", label=names[key]
                                  ).lines[0].get_color()
    placed = []  # shared by the methods, so that no two texts overlap
    for key, points in by_method.items():
        ends = (points[0], points[-1], best_point(points))
        label = [p for p in points if inside(p)] if inside else [p for p in points if p in ends]
        _label_points(ax, [p["fid_mean"] for p in label], [p[f"{y}_mean"] for p in label],
                      [f"w={p['w']:g}" for p in label], colors[key], placed=placed)


def frontier_seeds_figure(summary: list[dict], path=None, zoom: float | None = 1.5, y: str = "accuracy",
                          names: dict | None = None, title: str = "MNIST (classifier features)"):
    """The frontier at a glance: ``y`` (accuracy, or precision) against classifier FID (log axis), recall against
    classifier FID, and, with ``zoom``, the crowded low-FID corner of the first panel (:func:`zoom_box`, marked
    by a grey frame in the first). One colour and marker per method, its curve through its w; error bars are one
    seed standard deviation in both axes (none where a point has a single seed); w is written at each method's
    first, last and best-FID point (every point in the zoomed panel), skipping texts that would overlap.
    ``names`` maps method keys to legends (default :func:`method_names`). Saves to ``path`` if given; returns
    the figure.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not summary:
        raise ValueError("no summary points to draw: give seed_summary(rows) of a sweep")
    if y not in ("accuracy", "precision"):
        raise ValueError(f"y is 'accuracy' or 'precision' (fidelity), got {y!r}")
    by_method = methods(summary)
    names = {**method_names(by_method), **(names or {})}
    n_panels = 2 if zoom is None else 3
    longest = max(len(names[k]) for k in by_method)  # legend columns that fit the width (about 95 characters each
    ncol = min(len(by_method), 3 if longest <= 45 else 2 if longest <= 75 else 1)  # of 15 inches at 8 points)
    legend_rows = -(-len(by_method) // ncol)
    height = 4.3 + 0.2 * legend_rows + 0.3
    fig = Figure(figsize=(5.0 * n_panels, height), dpi=110)
    axes = fig.subplots(1, n_panels)
    for ax, metric in zip(axes[:2], (y, "recall"), strict=True):
        ax.set_xscale("log")
        _draw(ax, by_method, names, metric)
        _fid_axis(ax, log=True, axis="x")
        ax.set_ylabel(_NAMES[metric], fontsize=9)
    axes[0].set_title(f"{title}: fidelity", fontsize=10)
    axes[1].set_title(f"{title}: diversity", fontsize=10)
    if zoom is not None:
        (f0, f1), (a0, a1) = zoom_box(summary, zoom)
        ax = axes[2]
        ax.set_xscale("log")
        ax.set_xlim(f0, f1)
        ax.set_ylim(a0, a1)
        ax.set_autoscale_on(False)
        _draw(ax, by_method, names, y,  # every curve, cut by the frame; w written inside it
              inside=lambda p: f0 <= p["fid_mean"] <= f1 and a0 <= p[f"{y}_mean"] <= a1)
        _fid_axis(ax, log=True, axis="x")  # its limits stay: autoscaling is off
        ax.set_ylabel(_NAMES[y], fontsize=9)
        ax.set_title("zoomed: the best-FID corner (grey frame, left), every w", fontsize=10)
        axes[0].add_patch(Rectangle((f0, a0), f1 - f0, a1 - a0, fill=False, ec="0.4", lw=0.9, ls="--", zorder=0))
    for ax in axes:
        ax.set_xlabel(CFID + ", log axis", fontsize=9)
        ax.tick_params(labelsize=8, which="both")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
               title="error bars: one standard deviation over seeds, in both axes" + (
                   "; none at a point of one seed" if any(p["n_seeds"] < 2 for p in summary) else ""),
               title_fontsize=8)
    fig.tight_layout(rect=(0, (0.3 + 0.2 * legend_rows) / height, 1, 1))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig
