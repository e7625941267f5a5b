"""Shared fixtures: real MNIST when MINICFG_DATA holds it (CI points it at the offline mirror)."""

import pytest
import torch

from minicfg import data


@pytest.fixture(scope="session")
def mnist_test():
    try:
        return data.mnist(train=False)
    except FileNotFoundError as err:
        pytest.skip(f"MNIST not available: {err}")


@pytest.fixture(scope="session")
def mnist_small(mnist_test):
    """1,024 real test digits (images in [-1, 1], labels) for fast training tests."""
    images, labels = mnist_test.tensors
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
