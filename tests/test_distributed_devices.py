"""Which device and backend a process started by torchrun takes, for CUDA and MPS devices, on a machine without
either: ``pick_device`` is replaced by one that hands back the device asked for, and the process group and
``torch.cuda.set_device`` are recorded instead of run.

Written for mutation testing (docs/mutation.md): the CUDA branch of ``distributed.setup`` otherwise runs only on
a GPU machine under torchrun, which no test in CI can reach.
"""

import re

import pytest
import torch

from minicfg import distributed


@pytest.fixture
def torchrun(monkeypatch):
    """torchrun's environment for process 1 of 2, with the device check, set_device and the group recorded."""
    calls = {"picked": [], "set_device": [], "backend": []}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")

    def pick(name):
        calls["picked"].append(name)
        return torch.device(name)

    monkeypatch.setattr(distributed, "pick_device", pick)
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda device: calls["set_device"].append(device))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: calls["backend"].append(backend))
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (1, 2))
    return calls


def test_a_cuda_device_without_an_index_becomes_the_local_rank_and_joins_nccl(torchrun):
    device, rank, world = distributed.setup("cuda")
    assert torchrun["picked"] == ["cuda"]
    assert device == torch.device("cuda", 1)  # LOCAL_RANK=1: one GPU per process
    assert torchrun["set_device"] == [torch.device("cuda", 1)]
    assert torchrun["backend"] == ["nccl"]
    assert (rank, world) == (1, 2)


def test_without_local_rank_a_cuda_process_takes_gpu_0(torchrun, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK")
    device, _, _ = distributed.setup("cuda")
    assert device == torch.device("cuda", 0)
    assert torchrun["set_device"] == [torch.device("cuda", 0)]


def test_a_cuda_device_with_an_index_keeps_it(torchrun):
    device, _, _ = distributed.setup("cuda:0")
    assert device == torch.device("cuda", 0)  # not LOCAL_RANK's 1: the index asked for wins
    assert torchrun["set_device"] == [torch.device("cuda", 0)]
    assert torchrun["backend"] == ["nccl"]


def test_an_mps_device_is_refused_under_torchrun_with_the_fix(torchrun):
    message = ("data-parallel training needs cpu (gloo) or cuda (nccl) devices, not mps; run without torchrun, "
               "or pass --device cpu")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        distributed.setup("mps")
    assert torchrun["backend"] == []  # refused before joining a group
    assert torchrun["set_device"] == []


def test_a_cpu_process_sets_no_cuda_device(torchrun):
    device, _, _ = distributed.setup("cpu")
    assert device == torch.device("cpu")
    assert torchrun["set_device"] == []
    assert torchrun["backend"] == ["gloo"]
