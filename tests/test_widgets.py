"""The w explorer (minicfg.widgets): shared noise, cached dragging, background sampling, the static fallback."""

import base64
import builtins
import io
import threading

import pytest
import torch
from PIL import Image

from minicfg import widgets
from minicfg.checkpoint import load_model
from minicfg.generate import generate
from minicfg.widgets import PAPER_WS, SLIDER_WS, TEXT, WExplorer, class_samples

TINY = dict(ws=(-1.0, 0.0, 3.0), n_samples=2, n_steps=2, step_choices=(2, 3), n_cols=2)


@pytest.fixture(scope="module")
def model(one_thread):
    return load_model()[0]


@pytest.fixture()
def explorer(model):
    return WExplorer(model, label=3, w=0.0, **TINY)


def test_the_slider_runs_from_minus_one_to_eight_with_the_papers_values_marked(model):
    assert SLIDER_WS[0] == -1.0 and SLIDER_WS[-1] == 8.0 and set(PAPER_WS) <= set(SLIDER_WS)
    explorer = WExplorer(model, label=0, w=1.0, n_samples=1, n_steps=1, step_choices=(1,))
    labels = dict((value, label) for label, value in explorer.slider.options)
    assert list(labels) == list(SLIDER_WS)
    assert all(labels[w] == f"{w:g} (paper)" for w in PAPER_WS)
    assert all("paper" not in labels[w] for w in set(SLIDER_WS) - set(PAPER_WS))


def test_every_w_gets_the_samples_generate_gives_for_the_same_seed(model):
    samples = class_samples(model, 7, (0.0, 3.0), n_samples=3, n_steps=2, seed=5)
    labels = torch.full((3,), 7)
    for w, images in samples.items():
        assert torch.equal(images, generate(model, labels, w, n_steps=2, seed=5))
    assert not torch.equal(samples[0.0], samples[3.0]), "guidance must change the samples"


def test_dragging_swaps_cached_images_without_sampling(explorer, monkeypatch):
    def no_sampling(*args, **kwargs):
        raise AssertionError("dragging the slider must not sample")

    monkeypatch.setattr(widgets, "generate", no_sampling)
    seen = {}
    for w in explorer.ws:
        explorer.slider.value = w
        seen[w] = explorer.image.value
        assert seen[w] == explorer.png(3, 2, w)
    assert len(set(seen.values())) == len(explorer.ws), "each w has its own grid"
    width, height = widgets.png_size(explorer.image.value)
    assert (explorer.image.width, explorer.image.height) == (str(width), str(height)), "shown at its own size"
    assert explorer._thread is None


def test_a_new_class_is_sampled_in_the_background_with_a_progress_bar(explorer, monkeypatch):
    release, calls = threading.Event(), []

    def held_generate(*args, **kwargs):
        calls.append(kwargs["n_steps"])
        release.wait(30)
        return generate(*args, **kwargs)

    monkeypatch.setattr(widgets, "generate", held_generate)
    before = explorer.image.value
    explorer.picker.value = 5
    for _ in range(100):  # the thread shows its bar before it samples
        if calls:
            break
        threading.Event().wait(0.05)
    assert explorer._thread.is_alive()
    bar, status = explorer.progress.children
    assert status is explorer.status
    assert bar.children[1].max == len(explorer.ws) * 2, "one tick per network evaluation of every w"
    assert "sampling class 5" in explorer.status.value
    assert explorer.image.value == before and explorer.png() is None
    release.set()
    assert explorer.wait(60)
    assert explorer.progress.children == () and explorer.status.value == ""
    expected = widgets.grid_png(class_samples(explorer.model, 5, [0.0], n_samples=2, n_steps=2)[0.0], 2,
                                explorer.title(5, 2, 0.0))
    assert explorer.image.value == expected
    explorer.picker.value = 3  # computed before: shown at once, no thread
    assert explorer.image.value == before and not explorer._thread.is_alive()


def test_the_last_choice_wins_when_settings_change_during_sampling(explorer):
    explorer.picker.value = 5
    explorer.steps.value = 3
    assert explorer.wait(60)
    assert explorer.image.value == explorer.png(5, 3, 0.0)
    assert explorer.status.value == ""


def test_a_failed_background_sampling_is_shown_in_the_widget(explorer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(widgets, "generate", broken)
    explorer.steps.value = 3
    assert explorer.wait(60)
    assert explorer.status.value == "sampling failed: RuntimeError: out of memory"
    assert explorer.progress.children == (explorer.status,)


def test_without_a_widget_frontend_it_is_a_static_grid_at_two_pixels_per_image_pixel(explorer):
    explorer.slider.value = 3.0  # the static grid stays at the starting settings
    bundle = explorer._repr_mimebundle_()
    assert bundle["text/plain"] == TEXT
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    png = base64.b64decode(bundle["image/png"])
    assert png == explorer.png(3, 2, 0.0)
    width, height = Image.open(io.BytesIO(png)).size
    # one row of two 28-pixel digits with 1-pixel borders, each image pixel drawn 2 x 2
    assert width >= 2 * (2 * 28 + 3) and height >= 2 * (28 + 2)


def test_without_ipywidgets_it_still_shows_the_static_grid(model, monkeypatch):
    real_import = builtins.__import__

    def no_ipywidgets(name, *args, **kwargs):
        if name == "ipywidgets":
            raise ImportError("No module named 'ipywidgets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ipywidgets)
    explorer = WExplorer(model, label=1, w=3.0, **TINY)
    assert explorer.widget is None
    assert set(explorer._repr_mimebundle_()) == {"text/plain", "image/png"}
    assert explorer.settings() == (1, 2, 3.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(label=10), "label must be a class index from 0 to 9"),
    (dict(w=0.7), "w must be one of the slider's positions"),
    (dict(n_steps=5), r"n_steps must be one of step_choices \[2, 3\]"),
    (dict(ws=(1.0, 0.0)), "ws must be increasing"),
    (dict(n_samples=0), "n_samples and n_cols must be at least 1"),
])
def test_bad_settings_name_the_fix(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        WExplorer(model, **{**dict(label=0, w=0.0, **TINY), **kwargs})
