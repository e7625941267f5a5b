"""The pieces of data-parallel training that run without torchrun: which rows each process takes, when a process
counts as started by torchrun, and the loss as a module.

Written for mutation testing (docs/mutation.md): tests/test_ddp.py runs torchrun in subprocesses, which import
the package itself, not mutmut's mutants, so these in-process tests are what can kill a mutant of distributed.py.
"""

import re

import pytest
import torch

from minicfg import distributed


@pytest.mark.parametrize(("batch", "world"), [(12, 1), (12, 3), (8, 4)])
def test_shards_are_consecutive_equal_rows_covering_the_batch_once(batch, world):
    rows = [list(range(batch))[distributed.shard(batch, rank, world)] for rank in range(world)]
    # rank r takes rows r * batch / world up to (r + 1) * batch / world
    per = batch // world
    assert rows == [list(range(r * per, (r + 1) * per)) for r in range(world)]


@pytest.mark.parametrize(("batch", "world", "example"), [(10, 4, 8), (3, 4, 4)])
def test_a_batch_that_does_not_split_evenly_names_a_batch_size_that_does(batch, world, example):
    message = (f"the global batch of {batch} images does not split evenly over {world} processes; pass a --batch-size "
               f"that is a multiple of {world} (e.g. {example})")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        distributed.shard(batch, 0, world)


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("1", False), ("2", True), ("8", True)])
def test_launched_by_torchrun_means_more_than_one_process(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", value)
    assert distributed.launched_by_torchrun() is expected


def test_without_a_process_group_this_is_rank_0_of_1(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.rank_and_world() == (0, 1)
    assert distributed.setup("cpu") == (torch.device("cpu"), 0, 1)


def test_objective_module_calls_the_loss_with_its_model_recipe_classes_and_rows():
    calls = []

    def loss(model, x, labels, recipe, num_classes, generator, rows=None):
        calls.append((model, x, labels, recipe, num_classes, generator, rows))
        return x.sum()

    model, recipe, g = torch.nn.Linear(1, 1), object(), torch.Generator()
    module = distributed.ObjectiveModule(model, loss, recipe, 10)
    x, labels = torch.ones(4, 1), torch.tensor([0, 1, 2, 3])
    assert module(x, labels, g, slice(2, 4)).item() == 4.0
    assert calls == [(model, x, labels, recipe, 10, g, slice(2, 4))]
    assert module.model is model and list(module.parameters()) == list(model.parameters())


def test_under_torchrun_a_cpu_process_joins_a_gloo_group_on_the_cpu(monkeypatch):
    # torchrun's environment, with the process group faked: the device stays the CPU and the backend is gloo
    joined = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: joined.append(backend))
    device, _, _ = distributed.setup("cpu")
    assert device == torch.device("cpu")
    assert joined == ["gloo"]
