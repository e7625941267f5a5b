"""Shared fixtures: real MNIST when MINICFG_DATA holds it (CI points it at the offline mirror), else the subset
shipped in the package (smoke mode, which pytest sets, falls back to it)."""

import pytest
import torch

from minicfg import data, guidance

FULL_DATA_HINT = ("the full MNIST test set is not in the data folder (run `minicfg download --dataset mnist` or "
                  "point MINICFG_DATA at a copy); this test needs all 10,000 test digits")


@pytest.fixture(scope="session")
def mnist_test():
    """The 10,000 MNIST test digits; the test is skipped (with the fix named) when only the shipped subset exists."""
    if not data.available("mnist", train=False):
        pytest.skip(FULL_DATA_HINT)
    return data.mnist(train=False)


@pytest.fixture(scope="session")
def mnist_small():
    """Up to 1,024 real test digits (images in [-1, 1], labels) for fast training tests: from the full test set,
    or from the shipped subset (1,000 digits) when the full set is absent."""
    images, labels = data.mnist(train=False).tensors
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(labels), generator=g)[:1024]
    return images[idx].clone(), labels[idx].clone()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run faster on one thread than on two fighting for a shared core; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def registered():
    """The guidance registry as it was before the test, whatever the test registered."""
    before = dict(guidance.GUIDANCE)
    yield
    guidance.GUIDANCE.clear()
    guidance.GUIDANCE.update(before)
