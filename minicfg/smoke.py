"""Smoke mode: ``MINICFG_SMOKE=1`` (set by pytest for notebook kernels) shrinks loops and sample counts."""

from __future__ import annotations

import os

__all__ = ["is_smoke", "pick"]


def is_smoke() -> bool:
    """True when ``MINICFG_SMOKE`` is set to a true value (1, true, yes)."""
    return os.environ.get("MINICFG_SMOKE", "").strip().lower() in ("1", "true", "yes", "on")


def pick(full, smoke):
    """``smoke`` in smoke mode, else ``full``: ``n_samples = pick(10_000, 500)``."""
    return smoke if is_smoke() else full
