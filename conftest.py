"""Root pytest configuration: notebook kernels started by nbval run in smoke mode."""

import os


def pytest_configure(config):
    # nbval's kernels inherit this environment: notebooks shrink loops and sample counts.
    os.environ.setdefault("MINICFG_SMOKE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
