"""Data-parallel training with torch's own tools: ``torchrun --nproc_per_node N -m minicfg train ...``.

torchrun starts N processes and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the rendezvous address in
their environment; :func:`setup` turns that into a process group (gloo on CPU, nccl on CUDA) and the device of
this process. The Trainer then wraps the training loss in ``DistributedDataParallel``: every process draws the
same global batch and the same noise from (seed, step), evaluates the network on its own rows of it, and DDP
averages the gradients, so N processes take the same steps as one process with the same global batch (up to the
order of float sums). Only rank 0 writes checkpoints, logs, previews and the EMA export.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .devices import pick_device

__all__ = ["launched_by_torchrun", "setup", "teardown", "rank_and_world", "shard", "ObjectiveModule"]


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started with more than one process in the job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_and_world() -> tuple[int, int]:
    """(rank, number of processes) of the current process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(device: str | torch.device | None = None) -> tuple[torch.device, int, int]:
    """(device, rank, world size) of this process; joins torchrun's process group first if it started us.

    Under torchrun, a CUDA device without an index becomes ``cuda:LOCAL_RANK`` (one GPU per process).
    """
    device = pick_device(device)
    if not launched_by_torchrun():
        return device, *rank_and_world()
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "mps":
        raise ValueError("data-parallel training needs cpu (gloo) or cuda (nccl) devices, not mps; "
                         "run without torchrun, or pass --device cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, *rank_and_world()


def shard(batch_size: int, rank: int, world: int) -> slice:
    """The rows of a global batch that process ``rank`` of ``world`` computes; the batch must split evenly."""
    if batch_size % world:
        raise ValueError(f"the global batch of {batch_size} images does not split evenly over {world} processes; "
                         f"pass a --batch-size that is a multiple of {world} "
                         f"(e.g. {batch_size // world * world or world})")
    per = batch_size // world
    return slice(rank * per, (rank + 1) * per)


class ObjectiveModule(torch.nn.Module):
    """The training loss as a module's forward, so DistributedDataParallel sees the whole step (the objectives
    call ``model.raw`` or other methods that DDP's own forward would not cover)."""

    def __init__(self, model: torch.nn.Module, loss, recipe, num_classes: int):
        super().__init__()
        self.model = model
        self.loss, self.recipe, self.num_classes = loss, recipe, num_classes

    def forward(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, rows: slice):
        return self.loss(self.model, x, labels, self.recipe, self.num_classes, generator, rows=rows)


def teardown() -> None:
    """Leave the process group that :func:`setup` joined (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
