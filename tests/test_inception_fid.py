"""The optional Inception FID (minicfg.inception_fid): its errors, what minicfg hands torch-fidelity, the report column.

Most tests put a stand-in ``torch_fidelity`` module into ``sys.modules`` that records its call, so they check
minicfg's own conversion without the package or the weights. One test runs the installed torch-fidelity on randomly
initialised Inception weights (skipped without the package); one runs the real weights named by
``MINICFG_INCEPTION_WEIGHTS`` (skipped without them).
"""

import math
import os
import sys
import types

import numpy as np
import pytest
import torch

from minicfg import cli, data
from minicfg.inception_fid import INSTALL, WEIGHTS_FILE, check_weights, inception_fid
from minicfg.metrics import format_table


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / WEIGHTS_FILE
    path.write_bytes(b"stand-in weights")
    return path


@pytest.fixture
def fidelity(monkeypatch):
    """A stand-in torch_fidelity whose calculate_metrics records its keyword arguments and returns FID 12.5."""
    module = types.ModuleType("torch_fidelity")
    module.KEY_METRIC_FID = "frechet_inception_distance"
    module.calls = []

    def calculate_metrics(**kwargs):
        module.calls.append(kwargs)
        return {module.KEY_METRIC_FID: 12.5 + len(module.calls) - 1}

    module.calculate_metrics = calculate_metrics
    monkeypatch.setitem(sys.modules, "torch_fidelity", module)
    return module


def _items(dataset) -> torch.Tensor:
    return torch.stack([dataset[i] for i in range(len(dataset))])


def _digits(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)


# -- errors ---------------------------------------------------------------------------------------
def test_missing_torch_fidelity_names_the_install_command(monkeypatch, weights):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # makes `import torch_fidelity` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "minicfg\[fid\]"'):
        inception_fid(_digits(4), reference=_digits(4), weights=weights)


def test_cli_without_torch_fidelity_is_a_one_line_error(monkeypatch, weights, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    path = tmp_path / "s.npz"
    np.savez(path, images=_digits(8).numpy(), labels=np.zeros(8, np.int64), w=np.zeros(8, np.float32))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", str(path), "--inception-weights", str(weights)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert INSTALL in err and "Traceback" not in err


def test_missing_weights_say_which_file_and_that_nothing_is_downloaded(fidelity, tmp_path):
    for path, why in ((tmp_path / "nowhere.pth", "does not exist"), (tmp_path, "is a folder"), (None, "no Inception")):
        with pytest.raises(FileNotFoundError, match=why) as err:
            inception_fid(_digits(4), reference=_digits(4), weights=path)
        assert WEIGHTS_FILE in str(err.value) and "never downloads" in str(err.value)
    assert fidelity.calls == []


def test_check_weights_accepts_a_file(weights):
    assert check_weights(str(weights)) == weights


def test_a_device_torch_fidelity_cannot_use_is_refused(fidelity, weights):
    with pytest.raises(ValueError, match="device='cpu'"):
        inception_fid(_digits(4), reference=_digits(4), weights=weights, device="mps")
    assert fidelity.calls == []


# -- what minicfg passes to torch-fidelity -------------------------------------------------------
@pytest.mark.parametrize("as_float", [False, True])
def test_images_reach_torch_fidelity_as_three_uint8_channels(fidelity, weights, as_float):
    fake, real = _digits(6, seed=1), _digits(9, seed=2)
    given = fake.float() / 127.5 - 1 if as_float else fake  # the library's [-1, 1] convention, or uint8
    assert inception_fid(given, reference=real, weights=weights, device="cpu") == 12.5
    (call,) = fidelity.calls
    assert call["fid"] is True and call["cuda"] is False
    assert call["feature_extractor_weights_path"] == str(weights)
    for key, images in (("input1", fake), ("input2", real)):
        got = _items(call[key])
        assert got.dtype == torch.uint8 and got.shape == (len(images), 3, 28, 28)
        assert torch.equal(got, images.expand(-1, 3, -1, -1))  # every channel round-trips the grey values
    assert not call["cache"] and "input2_cache_name" not in call  # given images are never cached


def test_colour_images_keep_their_channels(fidelity, weights):
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (5, 3, 32, 32), generator=g, dtype=torch.uint8)
    inception_fid(images, reference=images.flip(0), dataset="cifar10", weights=weights, device="cpu")
    assert torch.equal(_items(fidelity.calls[0]["input1"]), images)


def test_a_named_reference_is_the_split_of_the_data_set_cached_per_weights_file(fidelity, weights, tmp_path):
    inception_fid(_digits(4), reference="test", weights=weights, device="cpu")
    real = data.load("mnist", train=False).tensors[0]
    call = fidelity.calls[0]
    assert len(call["input2"]) == len(real)
    assert torch.equal(call["input2"][7], ((real[7] + 1) * 127.5).round().to(torch.uint8).expand(3, -1, -1))
    assert call["cache"] is True and call["cache_root"] == str(data.data_root() / "minicfg-cache" / "inception")
    assert call["input2_cache_name"].startswith(f"minicfg-mnist-test-{len(real)}-")
    other = tmp_path / "other.pth"
    other.write_bytes(b"other weights")
    inception_fid(_digits(4), reference="test", weights=other, device="cpu")
    assert fidelity.calls[1]["input2_cache_name"] != call["input2_cache_name"]  # new weights: no stale statistics


def test_too_few_images_are_refused(fidelity, weights):
    with pytest.raises(ValueError, match="at least 2 images"):
        inception_fid(_digits(1), reference=_digits(4), weights=weights)


# -- the report -----------------------------------------------------------------------------------
def test_the_table_has_an_inception_column_only_when_computed():
    row = {"w": 1.0, "n": 10, "accuracy": 0.9, "fid": 3.0, "inception_score": 9.0, "precision": 0.8, "recall": 0.7}
    assert "Inception" not in format_table([row])
    head, line = format_table([{**row, "inception_fid": 42.25}]).splitlines()
    assert head.endswith("FID (Inception)") and line.split()[-1] == "42.250"


def test_cli_reports_the_inception_fid_per_w(fidelity, weights, tmp_path, capsys):
    images = _digits(20, seed=4).numpy()
    w = np.repeat(np.array([0.0, 2.0], np.float32), 10)
    path = tmp_path / "s.npz"
    np.savez(path, images=images, labels=np.arange(20) % 10, w=w)
    assert cli.main(["evaluate", str(path), "--inception-weights", str(weights), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].endswith("FID (Inception)")
    assert [line.split()[-1] for line in lines[2:]] == ["12.500", "13.500"]  # one call per w, in order of w
    for call, rows in zip(fidelity.calls, (w == 0.0, w == 2.0), strict=True):
        assert torch.equal(_items(call["input1"])[:, 0], torch.from_numpy(images[rows, 0]))


# -- the real library ----------------------------------------------------------------------------
def test_installed_torch_fidelity_accepts_what_minicfg_passes(tmp_path, monkeypatch):
    """torch-fidelity itself on randomly initialised Inception weights: the keyword names and input types are the
    ones the installed version reads, and the weights come from the given file (a download attempt fails)."""
    pytest.importorskip("torch_fidelity")
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    def no_download(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download the weights instead of reading the given file")

    with monkeypatch.context() as m:  # build the network without weights, to save its random ones
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path / WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    monkeypatch.setattr(fe, "load_state_dict_from_url", no_download)
    value = inception_fid(_digits(4, seed=5), reference=_digits(4, seed=6), weights=path, device="cpu")
    assert isinstance(value, float) and math.isfinite(value) and value >= 0


@pytest.mark.skipif(not os.path.isfile(os.environ.get("MINICFG_INCEPTION_WEIGHTS", "")),
                    reason="set MINICFG_INCEPTION_WEIGHTS to the path of " + WEIGHTS_FILE)
def test_real_weights_separate_digits_from_noise(mnist_test):
    pytest.importorskip("torch_fidelity")
    weights = os.environ["MINICFG_INCEPTION_WEIGHTS"]
    images = mnist_test.tensors[0]
    a, b = images[:200], images[200:400]
    noise = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real_vs_real = inception_fid(a, reference=b, weights=weights)
    noise_vs_real = inception_fid(noise, reference=b, weights=weights)
    assert real_vs_real < noise_vs_real / 5, (real_vs_real, noise_vs_real)
