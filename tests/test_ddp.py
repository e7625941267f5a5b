"""Data-parallel training (`torchrun -m minicfg train`) feeds each process's network its own rows of the global
batch, takes the steps of one process with the same global batch, refuses a batch that does not split evenly, and
a killed data-parallel run resumes to the result of the uninterrupted one."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoint_wait import wait_for_step
from train_probe import PROBE_STEPS

from minicfg.checkpoint import load_tensors

STEPS = 40
TRAIN = ["train", "--preset", "smoke", "--train-steps", str(STEPS), "--log-every", "1", "--device", "cpu",
         "--no-progress", "--no-preview"]
LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TORCHRUN = [*LAUNCH, "-m", "minicfg"]
# `minicfg` with the test hooks of tests/train_probe.py (what the network is fed; a run held at a step)
PROBE = str(Path(__file__).with_name("train_probe.py"))
BATCH, HOLD_AT = 64, 10  # the smoke preset's global batch; the step at which the killed run is held

# Tolerance against one process. The two runs add the same numbers in a different order: each process averages
# the loss over its 32 rows and DDP averages the two gradients, where one process averages over all 64 rows. That
# changes the last bits of the gradients (relative 1e-7 in float32), and AdamW carries such differences forward.
# Measured on this test's 40 steps: losses equal to a relative 2e-7, weights (raw and EMA) to 5e-7. The bounds
# below leave a factor of about 50 and 200; a bug (a process drawing its own noise, a gradient not averaged, a
# wrong slice) changes the losses in the second or third digit.
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-4


def _env(tmp_path):
    # the shipped MNIST subset (smoke mode, an empty data folder), one thread per process
    return dict(os.environ, OMP_NUM_THREADS="1", MINICFG_SMOKE="1", MINICFG_OFFLINE="1",
                MINICFG_DATA=str(tmp_path / "no-data"))


def _run(cmd, env, timeout=240):
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _losses(out):
    with open(out / "log.csv", newline="") as f:
        return {int(r["step"]): float(r["step_loss"]) for r in csv.DictReader(f)}


def _weights(out):
    tensors, meta = load_tensors(out / "checkpoint.safetensors")
    assert meta["step"] == STEPS
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "ema."))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    env = _env(tmp)
    for name, launch in (("one", [sys.executable]), ("two", LAUNCH)):
        result = _run([*launch, PROBE, *TRAIN, "--out", str(tmp / name)],
                      dict(env, MINICFG_PROBE_INPUTS=str(tmp / f"in-{name}")))
    return tmp, env, result  # the two-process run's output


def test_each_process_feeds_the_network_its_own_half_of_the_global_batch(runs):
    """Rank r of 2 evaluates the network on rows r * 32 ... r * 32 + 31 of the batch that one process evaluates
    whole: the same noised images, log-SNRs and (dropped) labels, and only those."""
    tmp = runs[0]
    one = torch.load(tmp / "in-one-rank0.pt")
    halves = [torch.load(tmp / f"in-two-rank{rank}.pt") for rank in (0, 1)]
    per = BATCH // 2
    for step in range(PROBE_STEPS):
        assert one[step]["z"].shape[0] == BATCH
        for rank, seen in enumerate(halves):
            for key, whole in one[step].items():
                assert seen[step][key].shape[0] == per, f"rank {rank} fed the network {seen[step][key].shape[0]} rows"
                torch.testing.assert_close(seen[step][key], whole[rank * per:(rank + 1) * per], rtol=0, atol=1e-6,
                                           msg=f"step {step + 1}, rank {rank}: {key} differs")
    assert not torch.equal(halves[0][0]["z"], halves[1][0]["z"])  # the two processes computed different rows


def test_a_batch_that_does_not_split_evenly_is_refused_by_every_process(tmp_path):
    out, logs = tmp_path / "uneven", tmp_path / "logs"
    cmd = [*LAUNCH, "--log-dir", str(logs), "--redirects", "2", "-m", "minicfg", *TRAIN, "--out", str(out),
           "--batch-size", str(BATCH - 1)]  # each process's stderr in a file of its own
    result = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "exitcode  : 2" in result.stderr, result.stderr[-3000:]
    message = (f"minicfg train: error: the global batch of {BATCH - 1} images does not split evenly over 2 "
               f"processes; pass a --batch-size that is a multiple of 2 (e.g. {BATCH - 2})")
    per_rank = sorted(logs.glob("*/attempt_0/*/stderr.log"))
    assert [p.parent.name for p in per_rank] == ["0", "1"]
    for path in per_rank:  # the one-line error, no traceback, from each process
        assert path.read_text().strip() == message
    assert not out.exists()  # refused before anything was written


def test_two_processes_take_the_steps_of_one(runs):
    tmp, _, two = runs
    assert "x 2 processes" in two.stdout  # printed once, by rank 0
    one_loss, two_loss = _losses(tmp / "one"), _losses(tmp / "two")
    assert sorted(two_loss) == list(range(1, STEPS + 1))  # one row per step, written once
    for step, loss in one_loss.items():
        assert two_loss[step] == pytest.approx(loss, rel=LOSS_RTOL), f"step {step}"
    assert one_loss[1] - one_loss[STEPS] > 0.05, "training barely moved the loss, so the comparison would say little"
    one_w, two_w = _weights(tmp / "one"), _weights(tmp / "two")
    assert one_w.keys() == two_w.keys()
    for name, a in one_w.items():
        torch.testing.assert_close(two_w[name], a, rtol=0, atol=WEIGHT_ATOL, msg=f"{name} differs")


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(runs):
    """The run is held at step HOLD_AT (after rank 0's checkpoint) and killed there, however fast the CPU; the
    resumed run is the plain command."""
    tmp, env, _ = runs
    out = tmp / "killed"
    args = [*TRAIN, "--out", str(out), "--checkpoint-every", "0.2"]
    proc = subprocess.Popen([*LAUNCH, PROBE, *args], env=dict(env, MINICFG_PROBE_HOLD_AT=str(HOLD_AT)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        step_at_kill = wait_for_step(proc, out / "checkpoint.safetensors", HOLD_AT, timeout=180, poll=0.05)
        alive = proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, as a crash would
        proc.wait()
    assert alive and step_at_kill == HOLD_AT, f"step {step_at_kill}: " + proc.stderr.read().decode()[-2000:]
    _run([*TORCHRUN, *args, "--resume"], env)
    resumed, whole = _weights(out), _weights(tmp / "two")
    for name, a in whole.items():  # the same state at the kill and the same draws afterwards: the same numbers
        torch.testing.assert_close(resumed[name], a, rtol=0, atol=0, msg=f"{name} differs after resume")
    losses = _losses(out)
    assert losses[STEPS] == _losses(tmp / "two")[STEPS]
