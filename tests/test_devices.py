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


def test_the_cli_takes_device_on_every_command_that_runs_a_network(tmp_path, monkeypatch, capsys):
    parser = cli.build_parser()
    for command in (["train", "--out", "x"], ["train-classifier", "--out", "x"], ["train-evaluator", "--out", "x"],
                    ["sample", "--out", "x.png"], ["evaluate", "x.npz"], ["sweep", "--out", "x"],
                    ["classify", "x.npz"]):
        assert parser.parse_args([*command, "--device", "cpu"]).device == "cpu"
        assert parser.parse_args(command).device is None  # auto
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:  # the clear error reaches the user as a one-line exit
        cli.main(["sample", "--out", str(tmp_path / "s.png"), "--device", "cuda", "--n-per-class", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.startswith("minicfg sample: error: cuda was asked for but torch.cuda.is_available() is False")
    assert "pass --device cpu" in err and not (tmp_path / "s.png").exists()


@pytest.fixture
def meta_first(monkeypatch):
    """A machine whose first available device is torch's "meta" device (tensors without data), so that where a
    network lands says whether the device asked for was honoured: on a CPU-only machine "auto" and "cpu" coincide."""
    import minicfg.devices as D

    monkeypatch.setattr(D, "available_devices", lambda: ["meta", "cpu"])
    assert pick_device("auto") == pick_device() == torch.device("meta")


def test_networks_land_on_the_device_asked_for(meta_first):
    from minicfg.evaluator import load_evaluator

    model, _ = load_model()  # the notebooks' default: the CPU, whatever the machine has
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    for device in ("auto", None):
        model, _ = load_model(device=device)
        assert {p.device for p in model.parameters()} == {torch.device("meta")}, device
    model, _ = load_model(dataset="cifar10", device="cpu")
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    evaluator, _ = load_evaluator(dataset="cifar10")  # the metrics' evaluator: the best available by default
    assert {p.device for p in evaluator.parameters()} == {torch.device("meta")}
    assert {p.device for p in load_evaluator(device="cpu")[0].parameters()} == {torch.device("cpu")}


def test_the_trainer_builds_on_the_device_asked_for(tmp_path, meta_first):
    from minicfg.train import TrainConfig, Trainer

    recipe = TrainConfig(train_steps=1, batch_size=8, model={"channels": (8, 16), "emb_dim": 16, "groups": 4})
    for device, expected in (("auto", "meta"), ("cpu", "cpu"), (None, "meta")):
        trainer = Trainer(recipe, tmp_path / str(device), device=device)
        assert trainer.device == torch.device(expected)
        assert {p.device.type for p in trainer.model.parameters()} == {expected}
        assert {p.device.type for p in trainer.ema.module.parameters()} == {expected}
