"""The device: cuda, then mps, then cpu unless one is named; an unavailable one is refused naming the fix."""

import pytest
import torch

from minicfg import cli
from minicfg.checkpoint import load_model
from minicfg.devices import available_devices, pick_device


def test_auto_picks_the_first_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == torch.device("mps") and available_devices() == ["mps", "cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None) == torch.device("cuda") and available_devices() == ["cuda", "mps", "cpu"]


def test_an_unavailable_or_unknown_device_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"cuda was asked for but torch.cuda.is_available\(\) is False.*--device cpu"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="mps was asked for"):
        pick_device("mps")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
    assert pick_device("CPU") == torch.device("cpu")


def test_the_cli_takes_device_on_every_command_that_runs_a_network(tmp_path, monkeypatch):
    parser = cli.build_parser()
    for command in (["train", "--out", "x"], ["train-classifier", "--out", "x"], ["train-evaluator", "--out", "x"],
                    ["sample", "--out", "x.png"], ["evaluate", "x.npz"], ["sweep", "--out", "x"],
                    ["classify", "x.npz"]):
        assert parser.parse_args([*command, "--device", "cpu"]).device == "cpu"
        assert parser.parse_args(command).device is None  # auto
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):  # the clear error reaches the user as a one-line exit, not a traceback
        cli.main(["sample", "--out", str(tmp_path / "s.png"), "--device", "cuda", "--n-per-class", "1"])


def test_networks_land_on_the_device_asked_for():
    model, _ = load_model()  # the notebooks' default: the CPU, whatever the machine has
    assert next(model.parameters()).device == torch.device("cpu")
    model, _ = load_model(device="auto")
    assert next(model.parameters()).device.type == pick_device().type
