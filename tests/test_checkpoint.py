"""Checkpoints: atomic writes, and a clear error for corrupt, truncated or mismatched files."""

import json

import pytest
import torch
from safetensors.torch import save_file

from minicfg.checkpoint import CheckpointError, load_model, save_weights
from minicfg.nets import UNet, UNetConfig


@pytest.fixture()
def saved(tmp_path):
    model = UNet(UNetConfig(channels=(8, 16), emb_dim=16, groups=4))
    path = tmp_path / "m.safetensors"
    save_weights(path, model, {"command": "test"})
    return path, model


def test_round_trip(saved):
    path, model = saved
    loaded, meta = load_model(path)
    assert meta["command"] == "test" and json.loads(path.with_suffix(".json").read_text())["command"] == "test"
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_truncated_file(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00\x01not a safetensors file at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_model(tmp_path / "absent.safetensors")


def test_config_that_does_not_match_the_weights(saved, tmp_path):
    path, model = saved
    meta = {"model": {**model.config.to_dict(), "channels": [8, 32]}}
    meta["model"].pop("arch")
    bad = tmp_path / "bad.safetensors"
    save_file(model.state_dict(), str(bad), metadata={"meta": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="does not match its config: .*wrong shape"):
        load_model(bad)


def test_foreign_safetensors_without_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not written by minicfg"):
        load_model(path)


def test_nan_weights_are_refused(saved, tmp_path):
    path, model = saved
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_weights(bad, model, {})
    with pytest.raises(CheckpointError, match="non-finite"):
        load_model(bad)


def test_a_file_of_another_data_set_is_refused_when_a_data_set_is_named(saved, tmp_path):
    """By the data set the file records, else (older files) by the image shape of its config; without a named
    data set (the notebooks' `load_model(path)`) any file loads."""
    path, model = saved  # 1 x 28 x 28 images, no data set recorded
    assert load_model(path)[0].config.image_channels == 1 and load_model(path, dataset="mnist")
    with pytest.raises(CheckpointError, match=r"holds a model of 1 x 28 x 28 images, not of cifar10's 3 x 32 x 32: "
                                              r"pass the --dataset it was trained on"):
        load_model(path, dataset="cifar10")
    recorded = tmp_path / "recorded.safetensors"
    save_weights(recorded, model, {"dataset": "cifar10"})  # a (made-up) record that contradicts the shape
    with pytest.raises(CheckpointError, match="holds a model trained on cifar10, not on mnist: pass --dataset "
                                              "cifar10 to use it"):
        load_model(recorded, dataset="mnist")
    with pytest.raises(CheckpointError, match="holds a noisy_classifier trained on mnist, not on cifar10.*leave out "
                                              "--checkpoint for the shipped one"):
        load_model(_shipped("mnist_noisy_classifier"), dataset="cifar10", role="noisy_classifier")
    with pytest.raises(CheckpointError, match="holds an evaluator trained on cifar10, not on mnist.*leave out "
                                              "--evaluator"):
        load_model(_shipped("cifar10_evaluator"), dataset="mnist", role="evaluator")
    # the shipped MNIST evaluator records a description, not a name, and its config only the non-default settings:
    # the shape comes from the network built from it
    with pytest.raises(CheckpointError, match="holds an evaluator of 1 x 28 x 28 images, not of cifar10's"):
        load_model(_shipped("mnist_evaluator"), dataset="cifar10", role="evaluator")
    assert load_model(_shipped("mnist_evaluator"), dataset="mnist", role="evaluator")


def _shipped(name):
    from minicfg.checkpoint import WEIGHTS_DIR

    return WEIGHTS_DIR / f"{name}.safetensors"
