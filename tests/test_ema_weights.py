"""The EMA of training as the weighted average of the models it has seen, with the weights written out.

An EMA whose decay at update t is d_t = W_{t-1} / W_t averages the models theta_1..theta_T with weights
w_t = W_t - W_{t-1} (the first model is copied: w_1 = W_1). So each decay rule fixes the weights:

- the power EMA of a ``fraction`` of the run (Karras et al. 2024, Eq. 3), d_t = (1 - 1/t)^(1/fraction):
  W_t = t^(1/fraction), so theta_t weighs t^(1/fraction) - (t-1)^(1/fraction);
- the warm-up EMA, d_t = (1 + n) / (10 + n) = t / (t + 9) with n = t - 1 models averaged so far:
  W_t = C(t + 9, 9), so theta_1 weighs 10 and theta_t weighs C(t + 8, 8) after it, until d_t reaches ``decay``.
"""

from math import comb

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from minicfg.train import _ema_fn


def _averaged(avg_fn, thetas):
    """The value torch's AveragedModel (as the Trainer uses it) holds after seeing the scalar models ``thetas``."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(model, avg_fn=avg_fn, use_buffers=True)
    for theta in thetas:
        with torch.no_grad():
            model.weight.fill_(theta)
        ema.update_parameters(model)
    return float(ema.module.weight.detach())


THETAS = [float(v) for v in torch.randn(25, generator=torch.Generator().manual_seed(0), dtype=torch.float64)]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_the_power_ema_weighs_model_t_by_t_to_the_1_over_fraction_difference(fraction):
    p = 1.0 / fraction
    weights = [t ** p - (t - 1) ** p for t in range(1, len(THETAS) + 1)]
    expected = sum(w * th for w, th in zip(weights, THETAS, strict=True)) / sum(weights)
    assert _averaged(_ema_fn(0.999, fraction), THETAS) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_the_warm_up_ema_weighs_model_t_by_a_binomial_coefficient():
    weights = [10] + [comb(t + 8, 8) for t in range(2, len(THETAS) + 1)]
    assert sum(weights) == comb(len(THETAS) + 9, 9)
    expected = sum(w * th for w, th in zip(weights, THETAS, strict=True)) / sum(weights)
    # decay 0.999 is not reached in 25 updates (d_25 = 25/34), so only the warm-up rule acts
    assert _averaged(_ema_fn(0.999), THETAS) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_once_the_warm_up_reaches_decay_the_ema_keeps_decay():
    # decay 0.5: d_t = t / (t + 9) reaches it at t = 9 (n = 8); from then on each model weighs half of the
    # average, so the last model's share of the result is exactly 1 - 0.5
    head = THETAS[:12]
    before = _averaged(_ema_fn(0.5), head)
    after = _averaged(_ema_fn(0.5), head + [before + 8.0])
    assert after == pytest.approx(before + 0.5 * 8.0, rel=1e-6)
    # before reaching it, update t = 3 (d = 3/12) gives the new model a share of 1 - 3/12
    first = _averaged(_ema_fn(0.5), THETAS[:2])
    third = _averaged(_ema_fn(0.5), THETAS[:2] + [first + 8.0])
    assert third == pytest.approx(first + (1 - 3 / 12) * 8.0, rel=1e-6)
