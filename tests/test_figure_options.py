"""The figure options notebooks 08 and 09 use: class names beside a sample grid's rows, a plain FID axis where the
FIDs span less than a decade, each method's own seed spread as its error bars, the zoomed low-w panels, and a
method column in the sweep table."""

import numpy as np
import pytest
import torch

from minicfg.metrics import format_table
from minicfg.sample_files import grid_figure
from minicfg.sweep_plots import frontier_figure, seed_spreads, tradeoff_figure


def _row(guidance, w, seed=1, accuracy=0.9, recall=0.8, fid=5.0, options=""):
    return {"label": "m", "guidance": guidance, "options": options, "sampler": "ancestral", "n_steps": 50,
            "n": 1000, "seed": seed, "w": w, "accuracy": accuracy, "recall": recall, "fid": fid,
            "inception_score": 9.0, "precision": 0.9}


def test_grid_rows_are_named_left_of_the_first_panel_each_beside_its_row():
    names = [f"class {c}" for c in range(5)]
    images = torch.ones(5 * 3, 3, 8, 8)
    fig = grid_figure({0.0: images, 1.0: images}, 3, row_names=names)
    fig.canvas.draw()
    first = fig.axes[0].get_window_extent()
    texts = [t for t in fig.texts if t.get_text() in names]
    assert [t.get_text() for t in texts] == names
    band = first.height / 5  # the panel's height split into its five rows, top to bottom
    for r, text in enumerate(texts):
        box = text.get_window_extent()
        centre = (box.y0 + box.y1) / 2
        assert first.y1 - (r + 1) * band < centre < first.y1 - r * band, f"{names[r]} is not beside row {r}"
        assert box.x1 <= first.x0 and box.x0 >= 0, "a row name overlaps the images or leaves the figure"
    with pytest.raises(ValueError, match="one name per row"):
        grid_figure({0.0: images}, 3, row_names=names[:4])
    assert not grid_figure({0.0: images}, 3).texts  # no names asked, none written


def test_fid_axis_is_logarithmic_only_where_the_fids_span_a_decade():
    narrow = [_row("cfg", w, accuracy=0.5 + w / 10, recall=0.5 - w / 20, fid=f)
              for w, f in ((0, 49.8), (1, 18.9), (2, 12.0), (4, 23.2))]  # 12 to 50: less than a decade
    wide = narrow + [_row("cfg", 6, accuracy=0.99, recall=0.1, fid=130.0)]
    assert [ax.get_yscale() for ax in tradeoff_figure(narrow, fid_scale="auto").axes] == ["linear"] * 3
    assert [ax.get_yscale() for ax in tradeoff_figure(wide, fid_scale="auto").axes] == ["log"] * 3
    assert tradeoff_figure(narrow).axes[0].get_yscale() == "log"  # the default is unchanged (notebook 07)
    assert tradeoff_figure(wide, fid_scale="linear").axes[0].get_yscale() == "linear"
    with pytest.raises(ValueError, match="'log', 'linear' or 'auto'"):
        tradeoff_figure(narrow, fid_scale="logarithmic")


def test_seed_spreads_are_each_methods_own_and_skip_methods_without_repeats():
    rows = [_row("cfg", 0.1, s, accuracy=a, fid=f) for s, a, f in ((1, 0.96, 4.0), (2, 0.98, 5.0), (3, 0.97, 6.0))]
    rows += [_row("rescale", 1.0, s, accuracy=a, fid=f) for s, a, f in ((1, 0.99, 16.0), (2, 0.97, 18.0))]
    rows += [_row("interval", 1.0)]  # one seed only
    spreads = seed_spreads(rows)
    assert set(spreads) == {("cfg", ""), ("rescale", "")}
    assert spreads[("cfg", "")]["accuracy"] == pytest.approx(0.01)  # std of 0.96, 0.98, 0.97
    assert spreads[("cfg", "")]["fid_rel"] == pytest.approx(1.0 / 5.0)
    assert spreads[("rescale", "")]["accuracy"] == pytest.approx(np.sqrt(2) * 0.01)  # std of 0.99, 0.97
    assert spreads[("rescale", "")]["fid_rel"] == pytest.approx(np.sqrt(2) / 17.0)


def _yerr_half_lengths(ax, line_index):
    """The half lengths of the vertical error bars of the line_index-th errorbar container of ``ax``."""
    container = ax.containers[line_index]
    vertical = container.lines[2][1]  # (x bars, y bars)
    return [abs(seg[1][1] - seg[0][1]) / 2 for seg in vertical.get_segments()]


def test_frontier_error_bars_come_from_each_methods_own_spread():
    rows = [_row("cfg", w, accuracy=0.9 + w / 50, fid=4 + w) for w in (0, 0.5, 1, 2)]
    rows += [_row("rescale", w, accuracy=0.9 + w / 40, fid=3 + w) for w in (0.5, 1, 2)]
    rows += [_row("interval", w, accuracy=0.9 + w / 60, fid=5 + w) for w in (1, 2)]
    spread = {("cfg", ""): {"accuracy": 0.01, "recall": 0.02, "fid_rel": 0.1},
              ("rescale", ""): {"accuracy": 0.005, "recall": 0.01, "fid_rel": 0.3}}
    fig = frontier_figure(rows, spread=spread)
    fidelity = fig.axes[0]
    assert len(fidelity.containers) == 2  # cfg and rescale have bars; interval, without repeats, has none
    assert _yerr_half_lengths(fidelity, 0) == pytest.approx([0.1 * (4 + w) for w in (0, 0.5, 1, 2)])
    assert _yerr_half_lengths(fidelity, 1) == pytest.approx([0.3 * (3 + w) for w in (0.5, 1, 2)])
    assert "no seed repeats, no bars: guidance = interval" in fig.legends[0].get_title().get_text()


def test_frontier_zoom_row_holds_only_the_low_w_points_on_a_plain_axis():
    rows = [_row("cfg", w, accuracy=0.9 + w / 50, fid=4 + 10 * w) for w in (0, 0.5, 1, 2, 4)]
    rows += [_row("rescale", w, accuracy=0.9 + w / 40, fid=3 + 10 * w) for w in (0.5, 2)]
    fig = frontier_figure(rows, zoom_w=1)
    assert len(fig.axes) == 4
    top, zoom = fig.axes[0], fig.axes[2]
    assert top.get_yscale() == "log" and zoom.get_yscale() == "linear"
    assert [list(line.get_xdata()) for line in zoom.get_lines()] == [[0.9, 0.91, 0.92], [0.9125]]
    assert "w <= 1" in zoom.get_title()
    assert len(frontier_figure(rows).axes) == 2  # no zoom asked: the two panels as before
    cut = frontier_figure(rows, zoom_w=1, zoom_fid=10).axes[2]  # w <= 1 and cFID <= 10: cfg w = 0, 0.5; rescale 0.5
    assert cut.get_ylim()[1] == 10 and cut.get_ylim()[0] == pytest.approx(0.9 * 4)
    low, high = cut.get_xlim()
    assert low < 0.9 < 0.9125 < high and high < 0.92  # cfg w = 1 (accuracy 0.92, cFID 14) is left out of the frame
    with pytest.raises(ValueError, match="raise zoom_fid"):
        frontier_figure(rows, zoom_w=1, zoom_fid=2)


def test_table_method_column_names_each_row():
    rows = [_row("cfg", 0.1), _row("autoguidance", 1.0, fid=4.168)]
    head, first, second = format_table(rows, method=lambda r: r["guidance"]).splitlines()
    assert head.split()[:3] == ["method", "w", "n"]
    assert first.split()[:2] == ["cfg", "0.1"] and second.split()[:4] == ["autoguidance", "1", "1000", "0.900"]
    assert second.split()[4] == "4.168"
    assert format_table(rows).splitlines()[0].split()[0] == "w"  # without it, the table as before
