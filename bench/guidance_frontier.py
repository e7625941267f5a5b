"""The guidance frontier of issue 31 over seeds: a summary table, a verdict per method and the figure, from a
sweep CSV already written (this script samples nothing).

Usage:
  python bench/guidance_frontier.py [--csv docs/sweeps/frontier/sweep.csv] [--summary docs/sweeps/frontier/summary.csv]
      [--figure docs/figures/guidance_frontier.png] [--baseline cfg] [--baseline-label LABEL] [--factor 2] [--zoom 1.5]
      [--max-fid FID]

The sweep CSV holds every method (guidance, options, label) at a few w, each point at seeds 1, 2, 3
(`minicfg sweep --seed N`); the points are summed up over the seeds (:func:`minicfg.frontier.seed_summary`),
written to the summary CSV, printed, compared with the baseline (:func:`minicfg.frontier.verdicts`, whose
docstring states the rule) and drawn (:func:`minicfg.frontier.frontier_seeds_figure`).
"""

from __future__ import annotations

import argparse
import math

from minicfg.frontier import frontier_seeds_figure, method_names, methods, seed_summary, verdicts, write_summary
from minicfg.guidance import DEFAULT_GUIDANCE
from minicfg.sweep import read_csv


def _pm(point: dict, metric: str, digits: int) -> str:
    mean, sd = point[f"{metric}_mean"], point[f"{metric}_sd"]
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if math.isfinite(sd) else f"{mean:.{digits}f} (1 seed)"


def table(summary: list[dict]) -> str:
    """The summary as a fixed-width text table, one line per (method, w)."""
    by_method = methods(summary)
    names = method_names(by_method)
    width = max(len(n) for n in names.values())
    head = (f"{'method':<{width}}  {'w':>6}  seeds  {'accuracy':>15}  {'classifier FID':>15}  {'precision':>15}  "
            f"{'recall':>15}  passes")
    lines = [head, "-" * len(head)]
    for key, points in by_method.items():
        for p in points:
            passes = f"{p['passes']:.2f}" if math.isfinite(p["passes"]) else "-"
            lines.append(f"{names[key]:<{width}}  {p['w']:>6g}  {p['n_seeds']:>5}  {_pm(p, 'accuracy', 3):>15}  "
                         f"{_pm(p, 'fid', 2):>15}  {_pm(p, 'precision', 3):>15}  {_pm(p, 'recall', 3):>15}  "
                         f"{passes:>6}")
    return "\n".join(lines)


def verdict_lines(found: dict) -> list[str]:
    """Each method's verdict, its best-FID point, and the call at each w with the numbers behind it."""
    lines = []
    for result in found.values():
        best, base = result["best"], result["baseline_best"]
        lines.append(f"{result['name']}: {result['verdict']}")
        if base is None:
            continue
        lines.append(f"  compared with {result['baseline']}")
        lines.append(f"  best classifier FID {_pm(best, 'fid', 2)} at w={best['w']:g} (accuracy "
                     f"{_pm(best, 'accuracy', 3)}, recall {_pm(best, 'recall', 3)}); the baseline's best "
                     f"{_pm(base, 'fid', 2)} at w={base['w']:g}")
        for p in result["points"]:
            if p["side"] is None:
                lines.append(f"  w={p['w']:g}: {p['call']}")
                continue
            parts = ", ".join(f"{m} {p['diff'][m]:+.3f} (spread {p['spread'][m]:.3f})" for m in p["diff"])
            where = "interpolated" if p["baseline"]["inside"] else "nearest point, outside its FID range"
            line = f"  w={p['w']:g}: {p['call']}; at the same FID, {p['side']} side ({where}): {parts}"
            if p["dominated_by"]:
                d = p["dominated_by"]
                at = "w between " + " and ".join(f"{w:g}" for w in d["w"]) if isinstance(d["w"], tuple) else \
                    f"w={d['w']:.2g}"
                line += (f"; the baseline at {at} dominates it (FID {d['fid']:.2f}, accuracy "
                         f"{d['accuracy']:.3f}, recall {d['recall']:.3f})")
            lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default="docs/sweeps/frontier/sweep.csv", help="the sweep CSV (all methods, seeds)")
    parser.add_argument("--summary", default="docs/sweeps/frontier/summary.csv", help="where the summary goes")
    parser.add_argument("--figure", default="docs/figures/guidance_frontier.png", help="where the figure goes")
    parser.add_argument("--baseline", default=DEFAULT_GUIDANCE, help="guidance method the others are compared with")
    parser.add_argument("--baseline-label", default=None, help="its label, where it was swept on several models")
    parser.add_argument("--factor", type=float, default=2.0, help="how many combined seed sds count as a difference")
    parser.add_argument("--zoom", type=float, default=1.5, help="the zoomed panel holds best FIDs within this factor")
    parser.add_argument("--max-fid", type=float, default=None,
                        help="leave points of a higher mean classifier FID out of the figure (they stay in the table)")
    args = parser.parse_args()
    rows = read_csv(args.csv)
    summary = seed_summary(rows)
    print(table(summary))
    print()
    print(f"verdicts (against {args.baseline}; a difference counts beyond {args.factor:g} combined seed sds):")
    baseline = {"guidance": args.baseline, **({"label": args.baseline_label} if args.baseline_label else {})}
    print("\n".join(verdict_lines(verdicts(summary, baseline=baseline, factor=args.factor))))
    write_summary(summary, args.summary)
    drawn = [p for p in summary if args.max_fid is None or p["fid_mean"] <= args.max_fid]
    for p in summary:
        if p not in drawn:
            print(f"left out of the figure (classifier FID above {args.max_fid:g}): {p['guidance']} at w={p['w']:g}, "
                  f"FID {p['fid_mean']:.1f}")
    frontier_seeds_figure(drawn, args.figure, zoom=args.zoom)
    print(f"\nwrote {args.summary} ({len(summary)} points from {len(rows)} rows) and {args.figure}")


if __name__ == "__main__":
    main()
