"""The w explorer: a slider over the guidance strength ``w``, a class picker and a step-count choice for notebooks.

It shows the samples of one class for the chosen ``w``, every slider position drawn from the same starting and
sampler noise (:func:`class_samples`), so dragging shows what guidance does to each draw. The samples for all
positions of a (class, step count) are computed once and kept as PNG images: dragging only swaps images. A new
class or step count is computed in a background thread, with a tqdm progress bar inside the widget.

Without a widget frontend (a notebook viewer, an export, ipywidgets not installed) it shows as a static grid at
its starting settings, and its text form is one fixed line, so nbval can compare it.
"""

from __future__ import annotations

import base64
import io
import struct
import threading

import torch

from .generate import generate
from .sample_files import grid_figure
from .samplers import DEFAULT_SAMPLER
from .smoke import pick

__all__ = ["PAPER_WS", "SLIDER_WS", "TEXT", "WExplorer", "class_samples", "grid_png", "png_size", "w_label"]

#: The guidance strengths of the paper's experiments (Ho & Salimans 2022, Tables 1-2), marked on the slider.
PAPER_WS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.0, 3.0, 4.0)
#: The slider's positions: from the unconditional model (w = -1) to strong guidance (w = 8).
SLIDER_WS = (-1.0, -0.5, *PAPER_WS, 5.0, 6.0, 8.0)
#: The explorer's text form (what nbval compares, and what a plain-text frontend shows).
TEXT = "w explorer: a w slider, a class picker and a step count (a static grid where widgets cannot be shown)"


def w_label(w: float) -> str:
    """The slider's label for ``w``: the paper's values are marked "(paper)"."""
    return f"{w:g} (paper)" if float(w) in PAPER_WS else f"{w:g}"


def class_samples(model, label: int, ws, *, n_samples: int, n_steps: int, seed: int = 0,
                  sampler: str = DEFAULT_SAMPLER, callback=None) -> dict[float, torch.Tensor]:
    """``n_samples`` images of class ``label`` for every ``w`` in ``ws``: {w: images}.

    Every ``w`` gets the same starting noise and the same sampler noise (both from ``seed``), so the images of
    two ``w`` at one position are the same draw under different guidance, exactly as
    :func:`minicfg.generate.generate` gives them. ``callback(step, lam, z, x_pred)`` is called after every
    network evaluation: ``len(ws) * n_steps`` calls in all.
    """
    labels = torch.full((n_samples,), int(label), dtype=torch.long)
    return {float(w): generate(model, labels, float(w), n_steps=n_steps, seed=seed, sampler=sampler,
                               batch_size=max(n_samples, 1), callback=callback)
            for w in ws}


def grid_png(images: torch.Tensor, n_cols: int, title: str) -> bytes:
    """``images`` as a PNG grid of ``n_cols`` columns under ``title``, 2 screen pixels per image pixel."""
    fig = grid_figure({title: images}, n_cols)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels of a PNG image, from its header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


class _Cancelled(Exception):
    """A background computation whose settings the user has already left."""


class WExplorer:
    """Samples of one class over the guidance strength ``w``, with a slider, a class picker and a step count.

    Leave it as a cell's last expression: JupyterLab shows the controls, other frontends a static grid at the
    starting settings. The samples of the starting class and step count are computed when it is made
    (``len(ws) * n_steps`` network evaluations of ``n_samples`` images); other settings in the background.

    Args:
        model: a diffusion model trained with label dropout (e.g. ``load_model()``).
        label: the starting class.
        w: the starting guidance strength; one of ``ws``.
        n_steps: the starting number of sampling steps; one of ``step_choices``.
        step_choices: the step counts offered (default 8, 16, 32, 64; 4 and 8 in smoke mode).
        n_samples: samples per grid (default 32; 8 in smoke mode), ``n_cols`` to a row.
        ws: the slider's positions (default :data:`SLIDER_WS`, -1 to 8).
        seed: the seed of the starting and sampler noise, shared by every ``w``.
        sampler: a name from :data:`minicfg.samplers.SAMPLERS`.
    """

    def __init__(self, model, *, label: int = 0, w: float = 1.0, n_steps: int | None = None, step_choices=None,
                 n_samples: int | None = None, ws=SLIDER_WS, seed: int = 0, sampler: str = DEFAULT_SAMPLER,
                 n_cols: int = 8):
        self.model = model
        self.num_classes = model.config.num_classes
        self.ws = tuple(float(x) for x in ws)
        self.step_choices = tuple(int(n) for n in (step_choices or pick((8, 16, 32, 64), (4, 8))))
        n_steps = pick(32, 8) if n_steps is None else int(n_steps)
        self.n_samples = pick(32, 8) if n_samples is None else int(n_samples)
        self.seed, self.sampler, self.n_cols = seed, sampler, int(n_cols)
        self._check(label, w, n_steps)
        self._pngs: dict[tuple[int, int], dict[float, bytes]] = {}
        self._lock = threading.Lock()
        self._job = 0
        self._thread: threading.Thread | None = None
        self._start = (int(label), n_steps, float(w))
        self._pngs[(int(label), n_steps)] = self._compute(int(label), n_steps)
        self.widget = None
        self.widget = self._build()

    def _check(self, label, w, n_steps):
        if not self.ws or sorted(set(self.ws)) != list(self.ws):
            raise ValueError(f"ws must be increasing and distinct, got {self.ws}; e.g. ws=minicfg.widgets.SLIDER_WS")
        if not isinstance(label, int) or not 0 <= label < self.num_classes:
            raise ValueError(f"label must be a class index from 0 to {self.num_classes - 1}, got {label!r}")
        if float(w) not in self.ws:
            raise ValueError(f"w must be one of the slider's positions {[f'{x:g}' for x in self.ws]}, got {w!r}")
        if not self.step_choices or min(self.step_choices) < 1:
            raise ValueError(f"step_choices must be positive step counts, got {self.step_choices}")
        if n_steps not in self.step_choices:
            raise ValueError(f"n_steps must be one of step_choices {list(self.step_choices)}, got {n_steps!r}")
        if self.n_samples < 1 or self.n_cols < 1:
            raise ValueError(f"n_samples and n_cols must be at least 1, got {self.n_samples} and {self.n_cols}")

    def title(self, label: int, n_steps: int, w: float) -> str:
        """The title of one grid."""
        return f"class {label}, w = {w_label(w)}, {n_steps} {self.sampler} steps"

    def _compute(self, label: int, n_steps: int, callback=None) -> dict[float, bytes]:
        samples = class_samples(self.model, label, self.ws, n_samples=self.n_samples, n_steps=n_steps,
                                seed=self.seed, sampler=self.sampler, callback=callback)
        return {w: grid_png(x, self.n_cols, self.title(label, n_steps, w)) for w, x in samples.items()}

    def png(self, label: int | None = None, n_steps: int | None = None, w: float | None = None) -> bytes | None:
        """The cached grid for these settings (the current ones by default), or None if not computed yet."""
        label_now, steps_now, w_now = self.settings()
        with self._lock:
            pngs = self._pngs.get((label_now if label is None else label, steps_now if n_steps is None else n_steps))
        return None if pngs is None else pngs[w_now if w is None else float(w)]

    def settings(self) -> tuple[int, int, float]:
        """The current (class, step count, w): the controls' values, or the starting ones without widgets."""
        if self.widget is None:
            return self._start
        return self.picker.value, self.steps.value, self.slider.value

    # --- the widgets -------------------------------------------------------------------------------------------
    def _build(self):
        try:
            import ipywidgets as W
        except ImportError:
            return None
        label, n_steps, w = self._start
        self.slider = W.SelectionSlider(options=[(w_label(x), x) for x in self.ws], value=w, description="w",
                                        continuous_update=True, layout=W.Layout(width="520px"))
        self.picker = W.Dropdown(options=list(range(self.num_classes)), value=label, description="class",
                                 layout=W.Layout(width="160px"))
        self.steps = W.Dropdown(options=list(self.step_choices), value=n_steps, description="steps",
                                layout=W.Layout(width="160px"))
        self.image = W.Image(format="png")
        self._set_image(self._pngs[(label, n_steps)][w])
        self.status = W.Label("")
        self.progress = W.VBox([])  # while sampling: a progress bar and a line of status; else empty
        self.slider.observe(self._on_w, "value")
        self.picker.observe(self._on_settings, "value")
        self.steps.observe(self._on_settings, "value")
        box = W.VBox([W.HBox([self.picker, self.steps]), self.slider, self.progress, self.image])
        box.add_class("minicfg-w-explorer")
        return box

    def _set_image(self, png: bytes):
        # at its own size: the frontend would stretch it to the output's width, the grid is drawn at 2 px per pixel
        width, height = png_size(png)
        self.image.value, self.image.width, self.image.height = png, str(width), str(height)

    def _show(self):
        png = self.png()
        if png is not None:
            self._set_image(png)

    def _on_w(self, _change):
        self._show()  # a cached image, or (while its grid is computed) the previous one

    def _on_settings(self, _change):
        label, n_steps, _ = self.settings()
        with self._lock:
            self._job += 1
            job, cached = self._job, (label, n_steps) in self._pngs
        if cached:
            self.progress.children, self.status.value = (), ""
            self._show()
            return
        self._thread = threading.Thread(target=self._fill, args=(job, label, n_steps), daemon=True)
        self._thread.start()

    def _fill(self, job: int, label: int, n_steps: int):
        from tqdm.notebook import tqdm

        bar = tqdm(total=len(self.ws) * n_steps, desc=f"class {label}, {n_steps} steps", display=False, leave=False)
        self.progress.children = (bar.container, self.status)
        self.status.value = f"sampling class {label} with {n_steps} steps for every w (the image updates when done)"

        def tick(*_):
            if job != self._job:
                raise _Cancelled
            bar.update()

        try:
            pngs = self._compute(label, n_steps, tick)
        except _Cancelled:
            return
        except Exception as err:  # shown in the widget: a background thread has nobody else to tell
            if job == self._job:
                self.progress.children = (self.status,)
                self.status.value = f"sampling failed: {type(err).__name__}: {err}"
            return
        finally:
            bar.close()
        with self._lock:
            self._pngs[(label, n_steps)] = pngs
            current = job == self._job
        if current:
            self.progress.children, self.status.value = (), ""
            self._show()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background computation, if any; True when none is left running."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def _repr_mimebundle_(self, include=None, exclude=None):
        label, n_steps, w = self._start
        with self._lock:
            static = self._pngs[(label, n_steps)][w]
        bundle = {"text/plain": TEXT, "image/png": base64.b64encode(static).decode("ascii")}
        if self.widget is not None:
            view = self.widget._repr_mimebundle_()
            bundle.update({k: v for k, v in view.items() if k != "text/plain"})
        return bundle
