"""The training step's data-parallel branch and its bf16 switch, in one process.

The data-parallel branch runs for real only under torchrun (tests/test_ddp.py, in subprocesses that import the
package, not mutmut's mutants: docs/mutation.md). Here a Trainer is told it is process 0 of 2 with a stand-in
for the DDP module and for ``all_reduce``, so what the step hands the module and how it averages the loss are
checked in-process, against the rows and the arithmetic written out.
"""

import pytest
import torch
from test_train import TINY

from minicfg.train import TrainConfig, Trainer


def _recipe(**kw):
    base = dict(train_steps=4, batch_size=8, warmup_steps=1, ema_decay=0.9, model=TINY, sample_every_s=1e9)
    base.update(kw)
    return TrainConfig(**base)


def _ready(trainer: Trainer) -> Trainer:
    """What Trainer.run does before its first step: the data's epochs and the learning-rate schedule."""
    trainer._ensure_data()
    trainer._make_sched()
    return trainer


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(16, 1, 28, 28, generator=g) * 2 - 1, torch.randint(0, 10, (16,), generator=g)


def test_the_parallel_step_hands_the_module_the_batch_its_generator_and_rows_and_averages_the_loss(
        tmp_path, data, monkeypatch):
    trainer = _ready(Trainer(_recipe(), tmp_path, data=data))
    trainer.world, trainer.rows = 2, slice(0, 4)  # process 0 of 2: the first half of the global batch
    x_expected, y_expected = trainer.batch(trainer.step)
    calls = []
    own_loss = 0.75
    other_loss = 0.25  # what the other process's shard gave

    def module(x, y, g, rows):
        calls.append((x, y, g, rows))
        return sum(p.sum() for p in trainer.model.parameters()) * 0 + own_loss  # a loss the optimiser can step on

    def all_reduce(tensor):
        tensor += other_loss  # the sum over the two processes, in place as torch.distributed does

    trainer.parallel = module
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    value = trainer.train_step()
    (x, y, g, rows), = calls
    assert torch.equal(x, x_expected) and torch.equal(y, y_expected)  # the whole global batch, not a shard
    assert isinstance(g, torch.Generator)
    assert rows == slice(0, 4)
    assert value == pytest.approx((own_loss + other_loss) / 2)  # the mean over the processes
    assert trainer.step == 1


def _second_loss(trainer: Trainer) -> float:
    trainer.train_step()  # the first step's loss does not depend on precision: the output layer starts at zero
    return trainer.train_step()


def test_bf16_off_is_float32_and_on_is_bfloat16(tmp_path, data):
    # the same two steps of the same model on the same batches: bf16 autocast rounds the network's products to
    # 8 mantissa bits, so its loss differs from the float32 one; with bf16 off the run is the float32 one,
    # reproducible to the bit
    off = _second_loss(_ready(Trainer(_recipe(bf16=False), tmp_path / "off", data=data)))
    on = _second_loss(_ready(Trainer(_recipe(bf16=True), tmp_path / "on", data=data)))
    again = _second_loss(_ready(Trainer(_recipe(bf16=False), tmp_path / "again", data=data)))
    assert off == again
    assert abs(on - off) > 1e-6 * abs(off)
