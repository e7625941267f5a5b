"""`minicfg ARGS` (as `python -m minicfg` runs it, also under torchrun) with two hooks for the training tests:

- ``MINICFG_PROBE_INPUTS=PREFIX``: every process saves what the network was given (z, lam, labels) in the first
  ``PROBE_STEPS`` training steps to ``PREFIX-rank<R>.pt``, so a test can see which rows each process computed;
- ``MINICFG_PROBE_HOLD_AT=K``: when step K is reached, rank 0 writes its checkpoint and every process then waits
  (to be killed by the test), so a kill always lands mid-run, however fast the CPU; a process whose parent dies
  (a torchrun worker when the test kills torchrun) exits instead of waiting on.
"""

import os
import sys
import threading
import time

import torch

from minicfg import cli, nets
from minicfg import train as training

PROBE_STEPS = 2


def _record_inputs(prefix: str) -> None:
    seen, raw = [], nets.UNet.raw

    def recording_raw(self, z, lam, labels):
        if self.training and len(seen) < PROBE_STEPS:
            seen.append({"z": z.detach().clone(), "lam": lam.detach().clone(), "labels": labels.detach().clone()})
            if len(seen) == PROBE_STEPS:
                torch.save(seen, f"{prefix}-rank{os.environ.get('RANK', '0')}.pt")
        return raw(self, z, lam, labels)

    nets.UNet.raw = recording_raw


def _exit_when_orphaned() -> None:
    """torchrun starts its workers in their own session, so the test's kill of torchrun's process group does not
    reach them: a thread ends this process once its parent is gone, wherever the main thread is waiting (the hold,
    or a collective whose other process is dead)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _hold_at(step: int) -> None:
    train_step = training.Trainer.train_step

    def holding_step(self):
        if self.step == step:
            if self.rank == 0:
                self.save()
            while True:  # until killed (an orphaned process is ended by _exit_when_orphaned)
                time.sleep(0.2)
        return train_step(self)

    training.Trainer.train_step = holding_step


if __name__ == "__main__":
    if os.environ.get("MINICFG_PROBE_INPUTS"):
        _record_inputs(os.environ["MINICFG_PROBE_INPUTS"])
    if os.environ.get("MINICFG_PROBE_HOLD_AT"):
        _exit_when_orphaned()
        _hold_at(int(os.environ["MINICFG_PROBE_HOLD_AT"]))
    sys.exit(cli.main())
