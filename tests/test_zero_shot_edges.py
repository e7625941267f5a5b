"""The zero-shot classifier's pieces at their edges: the predictions CSV of `minicfg classify --out`.

Written for the survivors of mutation testing (docs/mutation.md); each expected value is written out by hand here.
"""

import numpy as np
import torch

from minicfg import zero_shot


def test_the_predictions_csv_is_written_into_new_folders_row_by_row(tmp_path):
    """`minicfg classify --out` may name a folder that does not exist yet; the CSV has one row per image, an empty
    label when the file had none, and each error to 6 significant digits (csv's own \\r\\n line ends)."""
    out = tmp_path / "new" / "folder" / "p.csv"
    written = zero_shot._write_csv(out, None, torch.tensor([1, 0]), torch.tensor([[0.5, 0.25], [1 / 3, 2.0]]))
    assert written == out
    assert out.read_bytes() == (b"index,label,predicted,error_0,error_1\r\n"
                                b"0,,1,0.5,0.25\r\n"
                                b"1,,0,0.333333,2\r\n")


def test_the_predictions_csv_carries_the_files_labels(tmp_path):
    out = zero_shot._write_csv(tmp_path / "q.csv", np.array([3, 7]), torch.tensor([3, 1]),
                               torch.tensor([[0.125, 10.0, 1e-7], [123456789.0, 0.0, 1.5]]))
    assert out.read_text().splitlines() == ["index,label,predicted,error_0,error_1,error_2",
                                            "0,3,3,0.125,10,1e-07",
                                            "1,7,1,1.23457e+08,0,1.5"]


def test_load_images_reads_the_data_set_it_is_told(tmp_path):
    """A CIFAR-10 file: 3 x 32 x 32 uint8 images and labels 0..9, read back as they were written."""
    images = np.arange(2 * 3 * 32 * 32, dtype=np.int64).reshape(2, 3, 32, 32).astype(np.uint8)
    np.savez(tmp_path / "c.npz", images=images, labels=np.array([9, 0]))
    got_images, got_labels = zero_shot.load_images(tmp_path / "c.npz", "cifar10")
    assert np.array_equal(got_images, images) and got_labels.tolist() == [9, 0]


def _record(calls, name, result):
    def fake(*args, **kwargs):
        calls[name] = (args, kwargs)
        return result(*args) if callable(result) else result
    return fake


def test_classify_report_passes_its_settings_to_classify_file(tmp_path, monkeypatch):
    """`minicfg classify`'s options reach classify_file unchanged, and its defaults are those of the help: the
    shipped MNIST model, K = 16 draws, seed 0, the training weighting, no progress bar, the first device."""
    calls = {}
    result = (None, torch.tensor([1, 1]), torch.zeros(2, 10), 0.5)
    monkeypatch.setattr(zero_shot, "classify_file", _record(calls, "classify_file", result))
    zero_shot.classify_report("f.npz")
    assert calls["classify_file"] == (("f.npz", None, "mnist"), dict(progress=False, device=None, n_noise=16,
                                                                      seed=0, weighting="training"))
    zero_shot.classify_report("g.npz", "ck.pt", "cifar10", n_noise=3, seed=5, weighting="elbo", progress=True,
                              device="cpu")
    assert calls["classify_file"] == (("g.npz", "ck.pt", "cifar10"), dict(progress=True, device="cpu", n_noise=3,
                                                                          seed=5, weighting="elbo"))


def test_classify_file_loads_the_model_asked_for_and_passes_the_options_on(monkeypatch):
    import minicfg.checkpoint
    import minicfg.devices

    calls = {}
    images, labels, model = np.zeros((2, 1, 28, 28), np.uint8), np.array([3, 4]), object()
    monkeypatch.setattr(zero_shot, "load_images", _record(calls, "load_images", (images, labels)))
    monkeypatch.setattr(minicfg.devices, "pick_device", _record(calls, "pick_device", lambda name: f"picked {name}"))
    monkeypatch.setattr(minicfg.checkpoint, "load_model", _record(calls, "load_model", (model, {})))
    monkeypatch.setattr(zero_shot, "classify", _record(calls, "classify", (torch.tensor([3, 4]), torch.zeros(2, 10))))
    got_labels, predicted, _, seconds = zero_shot.classify_file("f.npz")
    assert calls["load_images"] == (("f.npz", "mnist"), {})
    assert calls["pick_device"] == ((None,), {})
    assert calls["load_model"] == ((None,), dict(dataset="mnist", device="picked None"))
    assert calls["classify"] == ((model, images), dict(progress=False))
    assert got_labels is labels and predicted.tolist() == [3, 4] and 0 <= seconds < 60
    zero_shot.classify_file("g.npz", "ck.pt", "cifar10", progress=True, device="cpu", n_noise=2, seed=7)
    assert calls["load_images"] == (("g.npz", "cifar10"), {})
    assert calls["pick_device"] == (("cpu",), {})
    assert calls["load_model"] == (("ck.pt",), dict(dataset="cifar10", device="picked cpu"))
    assert calls["classify"] == ((model, images), dict(progress=True, n_noise=2, seed=7))


def test_classify_report_counts_hits_and_predictions(monkeypatch):
    """3 of 4 predictions right is accuracy 0.750; the counts per class name add up to the 4 images."""
    result = (np.array([1, 0, 1, 1]), torch.tensor([1, 1, 1, 1]), torch.zeros(4, 10), 0.5)
    monkeypatch.setattr(zero_shot, "classify_file", _record({}, "classify_file", result))
    lines = zero_shot.classify_report("f.npz").splitlines()
    assert lines[0].startswith("f.npz: 4 images classified zero-shot") and lines[0].endswith("seed 0) in 0.5 s")
    assert lines[1:] == ["accuracy 0.750 (3 of 4)",
                         "predicted: " + ", ".join(f"{c}: {4 if c == 1 else 0}" for c in range(10))]


def test_classify_report_writes_the_files_labels_to_the_csv(tmp_path, monkeypatch):
    result = (np.array([2, 5]), torch.tensor([2, 4]), torch.full((2, 10), 0.5), 0.1)
    monkeypatch.setattr(zero_shot, "classify_file", _record({}, "classify_file", result))
    out = tmp_path / "p.csv"
    report = zero_shot.classify_report("f.npz", out=out)
    assert report.splitlines()[-1] == f"predictions written to {out}"
    rows = out.read_text().splitlines()
    assert [row.split(",")[:3] for row in rows[1:]] == [["0", "2", "2"], ["1", "5", "4"]]


def test_class_errors_is_the_mean_over_draws_with_every_setting_passed_on(monkeypatch):
    """class_errors averages class_errors_per_draw's (N, C, K) errors over the K draws; its defaults are K = 16,
    seed 0, the training weighting on [-20, 20], batches of 500, no progress bar."""
    calls = {}
    per_draw = torch.tensor([[[1.0, 3.0], [2.0, 6.0]]], dtype=torch.float64)  # N=1, C=2, K=2
    monkeypatch.setattr(zero_shot, "class_errors_per_draw", _record(calls, "per_draw", (per_draw, None)))
    got = zero_shot.class_errors("model", "images")
    assert got.tolist() == [[2.0, 4.0]]
    assert calls["per_draw"] == (("model", "images"), dict(n_noise=16, seed=0, weighting="training", lam_min=-20.0,
                                                           lam_max=20.0, num_classes=None, batch_size=500,
                                                           progress=False))
    options = dict(n_noise=3, seed=4, weighting="elbo", lam_min=-5.0, lam_max=6.0, num_classes=2, batch_size=7,
                   progress=True)
    zero_shot.class_errors("model", "images", **options)
    assert calls["per_draw"] == (("model", "images"), options)


def test_model_images_take_their_shape_from_the_images_when_the_config_has_none():
    """A model whose config has no image_size (a toy model with only num_classes) reads the shape off the images."""

    class Model:
        config = type("Config", (), {"num_classes": 3})()

    x = zero_shot._as_model_images(Model(), torch.zeros(2, 1, 2, 2))
    assert x.shape == (2, 1, 2, 2)


def test_model_images_take_their_shape_from_a_numpy_array_too():
    x = zero_shot._as_model_images(lambda z, lam, c: z, np.full((3, 1, 2, 2), 255, np.uint8))
    assert x.shape == (3, 1, 2, 2) and bool((x == 1).all())  # uint8 255 is the top of [-1, 1]


def test_noise_draws_are_stratified_over_the_range_asked_for_in_the_dtype_asked_for():
    """Draw k of K has u in [k/K, (k+1)/K), so its lam lies between the cosine schedule's values there (lam falls
    as u rises), written out by hand for the range [-3, 5]; lam and the noise come in the dtype asked for."""
    from test_core import _cosine_lam_by_hand

    k = 4
    lam, noise = zero_shot.noise_draws(0, (2, 3), k, lam_min=-3.0, lam_max=5.0, dtype=torch.float64)
    edges = _cosine_lam_by_hand(torch.arange(k + 1, dtype=torch.float64) / k, -3.0, 5.0)
    assert lam.dtype == noise.dtype == torch.float64 and noise.shape == (k, 2, 3)
    assert bool(((lam <= edges[:-1] + 1e-12) & (lam >= edges[1:] - 1e-12)).all())


def test_a_single_noise_draw_is_allowed():
    lam, noise = zero_shot.noise_draws(0, (2,), 1)
    assert lam.shape == (1,) and noise.shape == (1, 2)


def test_noise_draws_lams_are_the_cosine_schedule_of_the_stratified_uniforms():
    """Image `index`'s generator is seeded with numpy's SeedSequence([seed, index]) (its first uint64 word); its
    first K float64 uniforms r_k give u_k = (k + r_k) / K, and lam_k is the cosine schedule of u_k on the range
    asked for, written out by hand."""
    from test_core import _cosine_lam_by_hand

    k, seed, index = 4, 3, 11
    state = np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0]
    r = torch.rand(k, generator=torch.Generator().manual_seed(int(state)), dtype=torch.float64)
    expected = _cosine_lam_by_hand((torch.arange(k, dtype=torch.float64) + r) / k, -3.0, 5.0)
    lam, _ = zero_shot.noise_draws(index, (2,), k, seed=seed, lam_min=-3.0, lam_max=5.0, dtype=torch.float64)
    torch.testing.assert_close(lam, expected, rtol=1e-12, atol=1e-12)
