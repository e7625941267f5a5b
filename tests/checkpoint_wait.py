"""Shared by the kill-and-resume tests: wait until a training run's checkpoint holds a given step."""

import time

from minicfg.checkpoint import CheckpointError, load_tensors


def wait_for_step(proc, ckpt, at_least: int, timeout: float, poll: float) -> int:
    """Poll ``ckpt`` every ``poll`` seconds while ``proc`` runs, until its step is ``at_least`` or ``timeout``
    seconds pass; returns the last step read (0 if none). The caller then kills ``proc``."""
    deadline, step = time.time() + timeout, 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(poll)
        if ckpt.exists():
            try:
                step = load_tensors(ckpt)[1]["step"]
            except CheckpointError:
                continue  # only a half-written file would fail; the atomic rename makes that impossible
            if step >= at_least:
                break
    return step
