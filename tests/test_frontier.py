"""The guidance frontier over seeds (minicfg.frontier, bench/guidance_frontier.py): the summary against numpy, the
interpolation of CFG's curve against values worked out by hand, a verdict for methods placed on purpose ahead of,
inside and behind CFG's seed spread, the zoom box and the figure."""

import csv
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from minicfg.frontier import (
    SUMMARY_FIELDS,
    baseline_at,
    curve,
    frontier_seeds_figure,
    method_names,
    methods,
    seed_summary,
    verdicts,
    zoom_box,
)

ROOT = Path(__file__).resolve().parents[1]
# plain CFG: classifier FID falls from w=0 to its best at w=0.5, then rises (the U); accuracy rises, recall falls
CFG = {0.0: (6.0, 0.90, 0.90), 0.5: (4.0, 0.95, 0.85), 1.0: (5.0, 0.97, 0.80), 2.0: (10.0, 0.99, 0.70),
       4.0: (20.0, 0.995, 0.55)}
SD = {"fid_rel": 0.05, "accuracy": 0.005, "recall": 0.01}  # seeds 1, 2, 3 at mean - sd, mean, mean + sd


def _rows(guidance, points, seeds=(1, 2, 3), label="shipped", options=""):
    """Sweep rows whose seeds sit at mean - sd, mean, mean + sd: their sample standard deviation is sd exactly."""
    rows = []
    for w, (fid, acc, rec) in points.items():
        for seed, step in zip(seeds, (-1, 0, 1)[:len(seeds)] if len(seeds) > 1 else (0,), strict=True):
            rows.append({"label": label, "guidance": guidance, "options": options, "sampler": "ancestral",
                         "sampler_options": "", "n_steps": 50, "n": 500, "seed": seed, "w": w,
                         "fid": fid * (1 + step * SD["fid_rel"]), "accuracy": acc + step * SD["accuracy"],
                         "recall": rec + step * SD["recall"], "precision": 0.9, "inception_score": 9.5,
                         "passes": "2.0"})
    return rows


def _cfg_high_at(fid):
    """CFG's accuracy and recall at ``fid`` on its high-w side, between w=1 (FID 5) and w=2 (FID 10) or w=2 and
    w=4 (FID 20), linear in log FID, written out by hand."""
    (f0, a0, r0), (f1, a1, r1) = (CFG[1.0], CFG[2.0]) if fid <= 10 else (CFG[2.0], CFG[4.0])
    t = math.log(fid / f0) / math.log(f1 / f0)
    return a0 + t * (a1 - a0), r0 + t * (r1 - r0)


def _shifted(recall_shift):
    """A method whose points (FID 7.5 and 14.1, between CFG's w=1, 2 and 2, 4) lie at CFG's high-w accuracy for
    their FID, its recall shifted by ``recall_shift``."""
    fids = (7.5, math.sqrt(10 * 20))
    return {w: (f, _cfg_high_at(f)[0], _cfg_high_at(f)[1] + recall_shift) for w, f in zip((1.0, 3.0), fids,
                                                                                          strict=True)}


# combined spread of recall: sqrt(0.01^2 + 0.01^2) = 0.0141; twice that is 0.028
ROWS = (_rows("cfg", CFG) + _rows("ahead", _shifted(+0.06)) + _rows("inside", _shifted(+0.01))
        + _rows("behind", _shifted(-0.06)))


def _by_guidance(found):
    return {key[1]: result for key, result in found.items()}


def test_summary_is_the_mean_and_sample_sd_over_seeds_and_one_seed_keeps_nan():
    rng = np.random.default_rng(0)
    rows = []
    for w in (0.0, 1.0):
        for seed in (3, 1, 2, 4):  # seeds in any order, and four of them
            rows.append({"label": "m", "guidance": "cfg", "options": "", "sampler": "ancestral",
                         "sampler_options": "", "n_steps": 50, "n": 500, "seed": seed, "w": w,
                         **{m: float(rng.uniform(0.5, 9)) for m in ("accuracy", "fid", "precision", "recall",
                                                                      "inception_score")},
                         "passes": "" if seed == 4 else f"{1 + seed / 10}"})
    rows.append({**rows[0], "w": 2.0, "seed": 1, "passes": ""})  # one seed, no passes recorded
    summary = seed_summary(rows)
    assert [(p["w"], p["n_seeds"], p["seeds"]) for p in summary] == [(0.0, 4, "1 2 3 4"), (1.0, 4, "1 2 3 4"),
                                                                    (2.0, 1, "1")]
    for point in summary[:2]:
        group = [r for r in rows[:8] if r["w"] == point["w"]]
        for m in ("accuracy", "fid", "precision", "recall", "inception_score"):
            values = [r[m] for r in group]
            assert point[f"{m}_mean"] == pytest.approx(np.mean(values))
            assert point[f"{m}_sd"] == pytest.approx(np.std(values, ddof=1))
        assert point["passes"] == pytest.approx(np.mean([1.1, 1.2, 1.3]))  # the empty cell is left out
    single = summary[2]
    assert single["accuracy_mean"] == rows[0]["accuracy"] and math.isnan(single["accuracy_sd"])
    assert math.isnan(single["passes"])
    assert set(summary[0]) == set(SUMMARY_FIELDS)


def test_summary_rejects_empty_rows_missing_columns_and_a_seed_twice():
    with pytest.raises(ValueError, match="no sweep rows"):
        seed_summary([])
    with pytest.raises(ValueError, match="lack the columns recall"):
        seed_summary([{k: v for k, v in ROWS[0].items() if k != "recall"}])
    with pytest.raises(ValueError, match="seed 1 appears more than once"):
        seed_summary(ROWS[:3] + ROWS[:1])
    with pytest.raises(ValueError, match="not a number"):
        seed_summary([{**ROWS[0], "passes": "two"}])


def test_cfg_is_interpolated_in_log_fid_on_each_side_of_its_u():
    cfg = methods(seed_summary(_rows("cfg", CFG)))[("shipped", "cfg", "", "ancestral", "", 50, 500)]
    at = baseline_at(cfg, 7.5)
    t = math.log(7.5 / 5) / math.log(10 / 5)  # between w=1 (FID 5) and w=2 (FID 10): t = 0.585
    high = at["high w"]
    assert high["inside"] and high["w"] == (1.0, 2.0)
    assert high["accuracy"][0] == pytest.approx(0.97 + t * (0.99 - 0.97))
    assert high["recall"][0] == pytest.approx(0.80 + t * (0.70 - 0.80))
    assert high["fid"] == pytest.approx((7.5, 0.05 * (5 + t * (10 - 5))))  # the sd interpolated like the means
    assert high["accuracy"][1] == pytest.approx(0.005)
    low = at["low w"]  # the low-w side reaches FID 6 only (at w=0): its far end is used, and it is outside
    assert not low["inside"] and low["w"] == 0.0
    assert low["accuracy"] == pytest.approx((0.90, 0.005)) and low["fid"] == pytest.approx((6.0, 0.3))
    # between w=0.5 (FID 4) and w=0 (FID 6) on the low side
    s = math.log(5.5 / 4) / math.log(6 / 4)
    assert baseline_at(cfg, 5.5)["low w"]["recall"][0] == pytest.approx(0.85 + s * (0.90 - 0.85))
    below = baseline_at(cfg, 3.0)  # below CFG's best FID: both sides give the best point (w=0.5)
    assert [(b["inside"], b["w"]) for b in below.values()] == [(False, 0.5)] * 2
    assert [b["accuracy"][0] for b in below.values()] == pytest.approx([0.95, 0.95])
    with pytest.raises(ValueError, match="positive and finite"):
        baseline_at(cfg, 0.0)


def test_cfg_curve_joins_neighbouring_w_linearly_in_log_fid():
    line = curve(methods(seed_summary(_rows("cfg", CFG)))[("shipped", "cfg", "", "ancestral", "", 50, 500)],
                 per_segment=2)
    assert line["w"] == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4])
    # halfway between w=1 (FID 5) and w=2 (FID 10): the geometric mean of the FIDs, the mean of the rest
    assert line["fid_mean"][5] == pytest.approx(math.sqrt(5 * 10))
    assert line["accuracy_mean"][5] == pytest.approx((0.97 + 0.99) / 2)
    assert line["recall_sd"][5] == pytest.approx(0.01) and line["fid_sd"][5] == pytest.approx(0.05 * 7.5)


def test_verdicts_ahead_inside_and_behind_the_seed_spread():
    found = _by_guidance(verdicts(seed_summary(ROWS)))
    assert set(found) == {"ahead", "inside", "behind"}  # the baseline is not judged against itself
    assert found["ahead"]["verdict"] == "moves the frontier"
    assert found["inside"]["verdict"] == "along CFG's frontier (within the seed spread)"
    assert found["behind"]["verdict"] == "behind CFG's frontier"
    for name, shift, call in (("ahead", 0.06, "ahead"), ("inside", 0.01, "within"), ("behind", -0.06, "behind")):
        for point in found[name]["points"]:
            assert point["side"] == "high w" and point["call"] == call
            assert point["diff"]["recall"] == pytest.approx(shift)
            assert point["diff"]["accuracy"] == pytest.approx(0.0, abs=1e-12)
            assert point["spread"]["recall"] == pytest.approx(math.hypot(0.01, 0.01))
    best = found["ahead"]["best"]
    assert (best["w"], best["fid_mean"], best["fid_sd"]) == pytest.approx((1.0, 7.5, 0.05 * 7.5))
    assert found["ahead"]["baseline_best"]["w"] == 0.5
    # 0.06 is 4.2 combined spreads: with a factor of 5 it is no longer a difference
    assert _by_guidance(verdicts(seed_summary(ROWS), factor=5))["ahead"]["verdict"].startswith("along")


def test_verdicts_for_a_split_method_a_trade_a_lower_fid_and_one_seed():
    split = {1.0: (7.5, _cfg_high_at(7.5)[0], _cfg_high_at(7.5)[1] + 0.06),
             3.0: (14.0, _cfg_high_at(14.0)[0], _cfg_high_at(14.0)[1] - 0.06)}
    trade = {1.0: (7.5, _cfg_high_at(7.5)[0] + 0.03, _cfg_high_at(7.5)[1] - 0.06)}
    lower = {0.5: (2.0, 0.95, 0.85)}  # CFG's best accuracy and recall at half its best FID (4, sd 0.2)
    rows = (_rows("cfg", CFG) + _rows("split", split) + _rows("trade", trade) + _rows("lower", lower)
            + _rows("single", _shifted(+0.06), seeds=(1,)))
    found = _by_guidance(verdicts(seed_summary(rows)))
    assert [p["call"] for p in found["split"]["points"]] == ["ahead", "behind"]
    assert found["split"]["verdict"] == "ahead at some w, behind at others"
    assert found["trade"]["points"][0]["call"] == "trades"
    assert found["trade"]["verdict"].startswith("along")
    (point,) = found["lower"]["points"]  # outside CFG's FID range: FID itself is compared, with CFG's best point
    assert point["better"] == ["fid"] and point["diff"]["fid"] == pytest.approx(4.0 - 2.0)
    assert found["lower"]["verdict"] == "moves the frontier"
    assert found["single"]["verdict"] == "not decided (one seed)"
    assert all(p["call"] == "one seed (this point)" for p in found["single"]["points"])


def test_a_method_whose_fid_alone_is_worse_is_behind_though_cfg_has_less_recall_at_that_fid():
    # CFG's own w=1 and w=2 (accuracy a hair lower) at 1.6 times their FID: at FID 8 and 16, CFG's high-w side is
    # at a larger w with less recall, yet CFG's w=1 and w=2 themselves are better in FID and no worse in the rest
    slower = {w: (1.6 * f, a - 0.001, r) for w, (f, a, r) in CFG.items() if w in (1.0, 2.0)}
    found = _by_guidance(verdicts(seed_summary(_rows("cfg", CFG) + _rows("slower", slower))))["slower"]
    assert found["verdict"] == "behind CFG's frontier"
    for point, w in zip(found["points"], (1.0, 2.0), strict=True):
        assert point["side"] == "high w" and point["diff"]["recall"] > 2 * point["spread"]["recall"]
        assert point["call"] == "behind"
        cfg = point["dominated_by"]  # a point of CFG's curve near its w=1 or w=2: better FID, no worse elsewhere
        assert w - 0.1 <= cfg["w"] <= w
        assert cfg["fid"] < point["fid_mean"] - 2 * math.hypot(point["fid_sd"], SD["fid_rel"] * cfg["fid"])
        assert cfg["accuracy"] >= point["accuracy_mean"] and cfg["recall"] >= point["recall_mean"]


def test_accuracy_at_one_over_every_seed_still_has_a_spread_of_one_sample():
    # CFG at accuracy 1.000 over every seed (sd 0), as MNIST at large w; n = 500 samples, one sample = 0.002
    saturated = {w: (f, 1.0, r) for w, (f, _, r) in CFG.items() if w >= 1}
    rows = [{**r, "accuracy": 1.0} for r in _rows("cfg", saturated)]
    # at CFG's w=1 (its lowest FID: no point of its curve is better in FID), one sample wrong, and five
    one_off = [{**r, "accuracy": 0.998} for r in _rows("one_off", {1.0: saturated[1.0]})]
    five_off = [{**r, "accuracy": 0.99} for r in _rows("five_off", {1.0: saturated[1.0]})]
    found = _by_guidance(verdicts(seed_summary(rows + one_off + five_off)))
    (point,) = found["one_off"]["points"]
    assert point["spread"]["accuracy"] == pytest.approx(1 / 500) and point["call"] == "within"
    assert found["five_off"]["points"][0]["call"] == "behind"  # 0.01 is beyond twice one sample
    # a method at CFG's own w=4 point: CFG's w=1 (lower FID, more recall, accuracy 1.000 too) dominates it, but
    # dominates CFG's w=4 just as much: the point lies on CFG's curve, not behind it
    same = [{**r, "accuracy": 1.0} for r in _rows("same", {4.0: saturated[4.0]})]
    (point,) = _by_guidance(verdicts(seed_summary(rows + same)))["same"]["points"]
    assert point["call"] == "within" and point["dominated_by"] is None


def test_verdicts_need_baseline_rows_and_one_baseline():
    with pytest.raises(ValueError, match="no summary points"):
        verdicts([])
    with pytest.raises(ValueError, match=r"no rows of the baseline.*\['ahead', 'behind'\]"):
        verdicts(seed_summary(_rows("ahead", _shifted(0.06)) + _rows("behind", _shifted(-0.06))))
    # CFG on two models: each method is compared with the CFG of its own label; one on a third label cannot be
    two = seed_summary(ROWS + _rows("cfg", CFG, label="p_uncond=0 model"))
    found = verdicts(two)
    assert {k[0] for k in found} == {"shipped"} and {r["baseline"] for r in found.values()} == {"cfg"}
    names = method_names(methods(two))  # the model named only where it is not the one most methods ran on
    assert sorted(names.values()) == ["ahead", "behind", "cfg", "cfg, p_uncond=0 model", "inside"]
    with pytest.raises(ValueError, match="matches 2 methods"):
        verdicts(seed_summary(ROWS + _rows("cfg", CFG, label="p_uncond=0 model") + _rows("icg", CFG, label="c")))
    found = verdicts(two, baseline={"guidance": "cfg", "label": "shipped"})  # the other CFG is judged like any
    assert found[("p_uncond=0 model", "cfg", "", "ancestral", "", 50, 500)]["verdict"].startswith("along")
    with pytest.raises(ValueError, match="not method columns"):
        verdicts(two, baseline={"model": "shipped"})


def test_each_method_is_compared_with_cfg_of_its_own_sampler_and_steps():
    ddim = [{**r, "sampler": "ddim"} for r in _rows("cfg", CFG) + _rows("ahead", _shifted(+0.06))]
    fewer = [{**r, "n_steps": 25} for r in _rows("behind", _shifted(-0.06))]  # no CFG at 25 steps
    found = verdicts(seed_summary(ROWS[:15] + ddim + fewer))  # ROWS[:15]: CFG, ancestral, 50 steps
    by_key = {(k[1], k[3], k[5]): r for k, r in found.items()}
    assert set(by_key) == {("ahead", "ddim", 50), ("behind", "ancestral", 25)}
    assert by_key[("ahead", "ddim", 50)]["baseline"].startswith("cfg") and "ddim" in by_key[("ahead", "ddim", 50)][
        "baseline"]
    assert by_key[("ahead", "ddim", 50)]["verdict"] == "moves the frontier"
    assert by_key[("behind", "ancestral", 25)]["verdict"].startswith("not decided (no baseline swept with")
    # naming the steps in the selector compares across them
    across = verdicts(seed_summary(ROWS[:15] + fewer), baseline={"guidance": "cfg", "n_steps": 50})
    assert [r["verdict"] for r in across.values()] == ["behind CFG's frontier"]


FAR = {1.25: (40.0, 0.99, 0.3), 4.75: (60.0, 0.96, 0.2)}  # the rightmost point, its w a long text


def test_zoom_box_holds_every_best_point_near_the_lowest_and_leaves_a_far_one_out():
    summary = seed_summary(ROWS + _rows("far", FAR))
    (f0, f1), (a0, a1) = zoom_box(summary, zoom=3)
    for key, points in methods(summary).items():
        best = min(points, key=lambda p: p["fid_mean"])
        inside = f0 <= best["fid_mean"] <= f1 and a0 <= best["accuracy_mean"] <= a1
        assert inside == (key[1] != "far"), key  # FIDs 4 (CFG) to 7.5 are within 3 x 4; 40 is not
    assert f1 < 40 and f0 < 4 * (1 - 0.05)  # one seed sd (5%) below CFG's best FID, and a margin
    # CFG's w=0 (FID 6, accuracy 0.90) lies in the FID range but below every best point: it is not in the corner
    assert 0.90 < a0 <= 0.95 - 0.005
    with pytest.raises(ValueError, match="at least 1"):
        zoom_box(summary, zoom=0.5)


def test_figure_is_written_with_error_bars_the_zoom_and_texts_inside_their_frames(tmp_path):
    pair = {0.75: (45.0, 0.93, 0.25), 2.5: (62.0, 0.93, 0.15)}  # texts that would meet: one turned inwards
    summary = seed_summary(ROWS + _rows("far", FAR) + _rows("pair", pair))
    path = tmp_path / "frontier.png"
    fig = frontier_seeds_figure(summary, path)
    assert path.stat().st_size > 10_000
    fidelity, diversity, zoomed = fig.axes
    assert [ax.get_xscale() for ax in fig.axes] == ["log"] * 3
    assert len(fidelity.containers) == 6  # one errorbar curve per method
    assert "w=4.75" in [t.get_text() for t in fidelity.texts]  # written at the right edge, inwards
    bars = fidelity.containers[0].lines[2]  # CFG: (x bars, y bars)
    half_x = [abs(seg[1][0] - seg[0][0]) / 2 for seg in bars[0].get_segments()]
    assert half_x == pytest.approx([0.05 * f for f, _, _ in CFG.values()])
    box = zoom_box(summary)
    assert zoomed.get_xlim() == pytest.approx(box[0]) and zoomed.get_ylim() == pytest.approx(box[1])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        assert not legend.overlaps(frame), "the legend sits on a panel"
        extents = [(text.get_text(), text.get_window_extent(renderer)) for text in ax.texts]
        for name, extent in extents:  # the w written beside points stay inside the frame
            assert frame.x0 - 1 <= extent.x0 and extent.x1 <= frame.x1 + 1, name
            assert frame.y0 - 1 <= extent.y0 and extent.y1 <= frame.y1 + 1, name
        for i, (name, extent) in enumerate(extents):  # and none sits on another
            assert not any(extent.overlaps(other) for _, other in extents[i + 1:]), f"{name} overlaps a text"
    assert fig.legends[0].get_title().get_text() == "error bars: one standard deviation over seeds, in both axes"
    single = seed_summary(_rows("cfg", CFG, seeds=(1,)))
    assert frontier_seeds_figure(single).legends[0].get_title().get_text().endswith("none at a point of one seed")
    assert len(frontier_seeds_figure(summary, zoom=None).axes) == 2
    with pytest.raises(ValueError, match="'accuracy' or 'precision'"):
        frontier_seeds_figure(summary, y="recall")


def test_bench_writes_the_summary_and_figure_and_prints_the_verdicts(tmp_path, monkeypatch, capsys):
    sweep_csv = tmp_path / "sweep.csv"
    with sweep_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    summary_csv, figure = tmp_path / "out" / "summary.csv", tmp_path / "fig" / "frontier.png"
    monkeypatch.setattr(sys, "argv", ["guidance_frontier.py", "--csv", str(sweep_csv), "--summary",
                                      str(summary_csv), "--figure", str(figure)])
    runpy.run_path(str(ROOT / "bench" / "guidance_frontier.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "ahead: moves the frontier" in out and "behind: behind CFG's frontier" in out
    assert figure.stat().st_size > 10_000
    with summary_csv.open() as f:
        written = list(csv.DictReader(f))
    assert tuple(written[0]) == SUMMARY_FIELDS
    assert len(written) == len(CFG) + 3 * 2
    assert float(written[0]["fid_sd"]) == pytest.approx(0.05 * CFG[0.0][0])
