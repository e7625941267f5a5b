"""The training densities of lam, the loss's input check and the prediction registry: the densities against their
formulas written out with the standard library (statistics.NormalDist for EDM's normal density).

Written for the survivors of mutation testing (docs/mutation.md).
"""

import math
import re
from statistics import NormalDist

import pytest
import torch

from minicfg import predictions

EDM = NormalDist(2.4, 2.4)  # log sigma_edm ~ N(-1.2, 1.2^2) with sigma_edm = exp(-lam / 2)


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 5.0), (-3.0, 11.0)])
def test_lognormal_density_is_the_truncated_normals_quantile(lo, hi):
    # u = 0 is the data end (lam_max), u = 1 the noise end: lam(u) = F^-1(F(hi) - (F(hi) - F(lo)) u)
    u = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    lam = predictions.DENSITIES["lognormal"](u, lo, hi)
    f_lo, f_hi = EDM.cdf(lo), EDM.cdf(hi)
    expected = [EDM.inv_cdf(f_hi - (f_hi - f_lo) * v) for v in u.tolist()]
    # (the library takes F at the two ends in float32: near F = 1 that moves the quantile by ~1e-4)
    assert lam.tolist() == pytest.approx(expected, abs=1e-3)


def test_lognormal_density_stays_finite_where_the_cdf_rounds_to_0_or_1():
    # F(40) rounds to 1 and F(-40) to 0 in float64; the quantile of exactly 0 or 1 would be -inf or inf
    lam = predictions.DENSITIES["lognormal"](torch.tensor([0.0, 1.0], dtype=torch.float64), -40.0, 40.0)
    assert torch.isfinite(lam).all()
    assert lam[0].item() > 15.0 and lam[1].item() < -10.0


def test_sample_lams_keeps_the_dtype_asked_for():
    for density in predictions.DENSITIES:
        for dtype in (torch.float32, torch.float64):
            lam = predictions.sample_lams(density, 5, -20.0, 20.0, torch.Generator().manual_seed(0), dtype)
            assert lam.dtype == dtype, density
            assert math.isfinite(lam.sum().item())


def test_sample_lams_keeps_every_draw_inside_the_range(monkeypatch):
    # whatever a registered density returns (round-off at its ends), the draws are truncated to [lam_min, lam_max]
    monkeypatch.setitem(predictions.DENSITIES, "too_wide", lambda u, lo, hi: (0.5 - u) * 1000.0)
    lam = predictions.sample_lams("too_wide", 200, -7.0, 9.0, torch.Generator().manual_seed(0))
    assert lam.min().item() == -7.0 and lam.max().item() == 9.0


@pytest.mark.parametrize(("labels", "got"), [(torch.zeros(2, 1, dtype=torch.long), "(2, 1)"),
                                             (torch.zeros(3, dtype=torch.long), "(3,)")])
def test_prediction_loss_wants_one_label_per_image(labels, got):
    # checked before the model is touched, so no model is needed to see the message
    x = torch.zeros(2, 1, 4, 4)
    message = f"need labels of shape (2,) for x of shape (2, 1, 4, 4), got {got}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        predictions.prediction_loss(None, x, labels, 0.1, 10)


def test_a_prediction_name_can_be_registered_once():
    with pytest.raises(ValueError, match="^a prediction named 'v' is already registered; choose another name$"):
        predictions.register_prediction("v", predictions.PREDICTIONS["eps"])
    new = predictions.Prediction(c_in=None, to_eps=None, target=None, eps_mse_factor=None)
    try:
        assert predictions.register_prediction("test_only", new) is new
        assert predictions.get_prediction("test_only") is new
    finally:
        predictions.PREDICTIONS.pop("test_only", None)


class _Recorder(torch.nn.Module):
    """A stand-in network predicting eps: raw output 0.1 z + lam, recording the dtypes it is called with."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"prediction": "eps", "sigma_data": 0.5})()
        self.seen, self.lams = [], []

    def raw(self, z, lam, labels):
        self.seen.append((z.dtype, lam.dtype))
        self.lams.append(lam.clone())
        return 0.1 * z + lam.reshape(-1, *([1] * (z.ndim - 1)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_prediction_loss_draws_lam_and_noise_in_the_images_dtype(dtype):
    model = _Recorder()
    x = torch.linspace(-1, 1, 2 * 1 * 2 * 2).reshape(2, 1, 2, 2).to(dtype)
    loss = predictions.prediction_loss(model, x, torch.tensor([0, 1]), 0.1, 10, torch.Generator().manual_seed(0))
    assert model.seen == [(dtype, dtype)]
    assert math.isfinite(loss.item())


def test_rows_split_the_batch_and_its_draws():
    # rows= evaluates only those rows, with the draws of the whole batch: the halves' means average to the whole
    model = _Recorder()
    x = torch.linspace(-1, 1, 4 * 1 * 2 * 2, dtype=torch.float64).reshape(4, 1, 2, 2)
    labels = torch.tensor([0, 1, 2, 3])

    def loss(rows=None):
        return predictions.prediction_loss(model, x, labels, 0.2, 10, torch.Generator().manual_seed(3),
                                           weighting="min_snr", rows=rows).item()

    halves = (loss(slice(0, 2)) + loss(slice(2, 4))) / 2
    assert halves == pytest.approx(loss(), rel=1e-12)
    assert loss(slice(0, 2)) != pytest.approx(loss(slice(2, 4)))


def test_the_weighting_parameter_reaches_the_weighting():
    # one image, the same draws: the sigmoid weighting sigmoid(b - lam) scales the loss by its ratio between two b
    model = _Recorder()
    x = torch.linspace(-1, 1, 4, dtype=torch.float64).reshape(1, 1, 2, 2)

    def loss(b):
        return predictions.prediction_loss(model, x, torch.tensor([3]), 0.0, 10, torch.Generator().manual_seed(1),
                                           weighting="sigmoid", weighting_param=b).item()

    ratio = loss(5.0) / loss(0.0)
    lam = model.lams[0].item()
    assert model.lams[1].item() == lam
    assert ratio == pytest.approx((1 / (1 + math.exp(lam - 5.0))) / (1 / (1 + math.exp(lam))), rel=1e-9)
