"""Sample grids are drawn at least at their native size: every image pixel covers >= 2 x 2 screen pixels."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from minicfg.sample_files import grid_figure, save_grid

DIGIT = 28  # MNIST's image size; make_grid puts a 1-pixel white line between images


def _png(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)  # the figure's own dpi, as a notebook shows it
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L")).astype(int)


def _pixels_per_image_pixel(png: np.ndarray, fig, axis: int) -> float:
    """Measured on the PNG: the length of the black runs (one black 28-pixel image each) on a scan line through the
    first panel's first image, across the panel (axis 1) or down it (axis 0), divided by 28."""
    box = fig.axes[0].get_window_extent()  # the first panel, in display pixels (origin bottom left)
    row = png.shape[0] - int(box.y1) + DIGIT  # about half an image in from the panel's top left corner,
    col = int(box.x0) + DIGIT                 # at >= 2 pixels per image pixel
    line = png[row, :] if axis == 1 else png[:, col]
    black = np.r_[0, (line < 50).astype(int), 0]
    edges = np.flatnonzero(np.diff(black))
    runs = edges[1::2] - edges[::2]
    assert len(runs) >= 1, "no image found on the scan line"
    return float(np.median(runs)) / DIGIT


@pytest.mark.parametrize("rows", [1, 10])
def test_every_image_pixel_gets_at_least_two_screen_pixels(rows):
    n_per_class = 4
    panels = {w: -torch.ones(rows * n_per_class, 1, DIGIT, DIGIT) for w in (0.0, 1.0, 3.0)}  # black digits
    fig = grid_figure(panels, n_per_class, title="a title")
    png = _png(fig)
    grid_w, grid_h = n_per_class * (DIGIT + 1) + 1, rows * (DIGIT + 1) + 1
    # the PNG holds three panels side by side and one panel's height, each at >= 2 pixels per image pixel
    assert png.shape[1] >= 2 * 3 * grid_w and png.shape[0] >= 2 * grid_h
    for ax in fig.axes:
        box = ax.get_window_extent()
        assert box.width / grid_w >= 2 - 1e-6 and box.height / grid_h >= 2 - 1e-6
    assert _pixels_per_image_pixel(png, fig, axis=1) >= 2  # across the images of a row
    assert _pixels_per_image_pixel(png, fig, axis=0) >= 2  # down the panel


def test_save_grid_keeps_the_scale(tmp_path):
    panels = {0.0: -torch.ones(10 * 2, 1, DIGIT, DIGIT)}
    path = save_grid(panels, 2, tmp_path / "grid.png")
    width, height = Image.open(path).size
    assert width >= 2 * (2 * (DIGIT + 1) + 1) and height >= 2 * (10 * (DIGIT + 1) + 1)


def test_row_names_sit_left_of_their_rows_inside_the_figure():
    rows, n_per_class = 10, 2
    fig = grid_figure({0.0: -torch.ones(rows * n_per_class, 1, DIGIT, DIGIT)}, n_per_class,
                      row_names=[f"digit {k}" for k in range(rows)])
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    panel = fig.axes[0].get_window_extent()
    texts = [t for t in fig.texts if t.get_text().startswith("digit")]
    assert [t.get_text() for t in texts] == [f"digit {k}" for k in range(rows)]
    step = panel.height / rows  # the rows' height on screen (the 1-pixel padding aside)
    for k, t in enumerate(texts):
        box = t.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= panel.x0  # inside the figure, left of the panel
        row_centre = panel.y1 - (k + 0.5) * step  # row k counted from the top
        assert abs((box.y0 + box.y1) / 2 - row_centre) < 0.1 * step


def test_row_names_must_match_the_rows():
    with pytest.raises(ValueError, match="one name per row"):
        grid_figure({0.0: -torch.ones(10 * 2, 1, DIGIT, DIGIT)}, 2, row_names=["a", "b"])
