"""The steps figure labels every measured step count, and the labels do not overlap as drawn."""

from matplotlib.backends.backend_agg import FigureCanvasAgg

from minicfg.sweep_plots import metrics_figure


def test_every_step_count_is_labelled_without_overlap():
    steps = (16, 32, 50, 64, 128, 256)  # docs/sweeps/steps: 50 and 64 sit close together on the log axis
    rows = [{"label": "a", "n_steps": t, "w": w, "fid": 5.0 + t / 100, "inception_score": 9.0, "accuracy": 0.9,
             "precision": 0.9, "recall": 0.8} for t in steps for w in (0.0, 1.0)]
    fig = metrics_figure(rows, by="w", x="n_steps")
    renderer = FigureCanvasAgg(fig).get_renderer()
    for ax in fig.axes:
        labels = ax.get_xticklabels()
        assert [t.get_text() for t in labels] == [str(t) for t in steps]
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False))  # apart on the screen, left to right
