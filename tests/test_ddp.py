"""Data-parallel training (`torchrun -m minicfg train`) takes the steps of one process with the same global batch,
and a killed data-parallel run resumes to the result of the uninterrupted one."""

import csv
import os
import signal
import subprocess
import sys

import pytest
import torch
from checkpoint_wait import wait_for_step

from minicfg.checkpoint import load_tensors

STEPS = 40
TRAIN = ["train", "--preset", "smoke", "--train-steps", str(STEPS), "--log-every", "1", "--device", "cpu",
         "--no-progress", "--no-preview"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "minicfg"]

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
    _run([sys.executable, "-m", "minicfg", *TRAIN, "--out", str(tmp / "one")], env)
    two = _run([*TORCHRUN, *TRAIN, "--out", str(tmp / "two")], env)
    return tmp, env, two


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
    tmp, env, _ = runs
    out = tmp / "killed"
    cmd = [*TORCHRUN, *TRAIN, "--out", str(out), "--checkpoint-every", "0.2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        step_at_kill = wait_for_step(proc, out / "checkpoint.safetensors", 3, timeout=180, poll=0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, as a crash would
        proc.wait()
    assert 3 <= step_at_kill < STEPS, f"killed at step {step_at_kill}: " + proc.stderr.read().decode()[-2000:]
    _run(cmd + ["--resume"], env)
    resumed, whole = _weights(out), _weights(tmp / "two")
    for name, a in whole.items():  # the same state at the kill and the same draws afterwards: the same numbers
        torch.testing.assert_close(resumed[name], a, rtol=0, atol=0, msg=f"{name} differs after resume")
    losses = _losses(out)
    assert losses[STEPS] == _losses(tmp / "two")[STEPS]
