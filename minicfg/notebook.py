"""What the notebooks share: their setup, and sentences written from the run's own numbers.

A number that a cell measured is never typed into a notebook's markdown, because the next run (another CPU, a
retrained model, smoke mode) changes it. The cell that measures it says it instead, with :func:`say`, from the
values it holds, and asserts the qualitative claim the sentence makes::

    say(f"From $w=0$ to $w={best['w']:g}$ accuracy rises from {acc0:.1%} to {best['accuracy']:.1%}.",
        rises=best["accuracy"] > acc0)

A false claim stops the run with an AssertionError that quotes the sentence. Claims that only hold at the full
run's sample sizes are named in ``full_run_only``: in smoke mode they are not asserted, and a sentence whose
exempt claim is false is shown with a warning instead of as a statement. ``tests/test_notebook_prose.py`` fails
when a markdown cell holds a measured-looking number that is in none of the notebook's outputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .smoke import is_smoke

__all__ = ["ClaimError", "say", "setup"]


class ClaimError(AssertionError):
    """A sentence's claim is false for the numbers of this run."""


def _truth(name: str, value) -> bool:
    """A claim's value as a bool; only real truth values are accepted (a non-empty list is not a claim)."""
    if isinstance(value, bool):
        return value
    item = getattr(value, "item", None)       # numpy and torch scalars, 0-dim arrays and tensors
    shape = getattr(value, "shape", None)
    if item is not None and (shape is None or len(shape) == 0 or all(s == 1 for s in shape)):
        out = item()
        if isinstance(out, bool):
            return out
    raise TypeError(f"say(): the claim {name}={value!r} is not a truth value; pass a comparison, e.g. "
                    f"{name}=(acc_w1 > acc_w0), or bool(...) of one")


def say(text: str, *, full_run_only: tuple[str, ...] | list[str] = (), **claims) -> None:
    """Show ``text`` (Markdown, usually an f-string of measured values) under the cell, after checking the claims.

    Each keyword is a claim the sentence makes, named for what it says (``rises_with_w=...``), whose value is a
    truth value computed from the same numbers. A false claim raises :class:`ClaimError`. Claims named in
    ``full_run_only`` are asserted only outside smoke mode; in smoke mode a false one marks the sentence as not
    holding at smoke mode's sample sizes instead of stating it.
    """
    if not isinstance(text, str) or not text.strip():
        raise TypeError("say(): the first argument is the sentence to show, a non-empty string")
    unknown = set(full_run_only) - set(claims)
    if unknown:
        raise ValueError(f"say(): full_run_only names {sorted(unknown)}, which are not claims of this sentence; "
                         f"its claims are {sorted(claims)}")
    false = [name for name, value in claims.items() if not _truth(name, value)]
    checked = [name for name in false if not (is_smoke() and name in full_run_only)]
    if checked:
        raise ClaimError(f"the claim {', '.join(checked)} is false for this run's numbers, so this sentence may "
                         f"not be shown: {text!r}")
    if false:  # smoke mode, exempt claims only
        text = (f"*Smoke mode: at these small sample sizes the claim {', '.join(false)} of the following sentence "
                f"does not hold; the full run asserts it.* " + text)
    _show(text)


def _show(text: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with the notebooks' dependencies
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


def setup(*, dpi: int = 80) -> Path:
    """The first cell of notebooks 07-10: plot style, quiet tqdm, the mode printed; returns the repository's
    ``docs/sweeps`` folder, which holds the recorded sweeps these notebooks read.

    The folder is searched from the working directory upwards (JupyterLab starts kernels in ``notebooks/``,
    pytest in the repository's root); outside a checkout of the repository it is a FileNotFoundError naming the fix.
    """
    import matplotlib.pyplot as plt

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "axes.grid": True, "grid.alpha": 0.3})
    print("smoke mode:", is_smoke())
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if (folder / "docs" / "sweeps").is_dir():
            return folder / "docs" / "sweeps"
    raise FileNotFoundError(f"docs/sweeps not found in {cwd} or above it: these notebooks read the recorded sweeps "
                            "of the minicfg repository, so run them from a checkout of it (jupyter lab notebooks/)")
