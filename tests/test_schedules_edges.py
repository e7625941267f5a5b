"""The schedules at the edges of their inputs: defaults, the smallest valid values and the first invalid ones.

Written for the survivors of mutation testing (docs/mutation.md): each expected value is stated by hand here
(DDPM's alpha_bar_t = prod (1 - beta_s), the closed forms of the two log-SNR schedules), not read from the library.
"""

import math

import numpy as np
import pytest
import torch

from minicfg import schedules


def test_ddpm_default_is_the_1000_step_linear_schedule_of_ho_et_al():
    lam = schedules.ddpm_log_snr(dtype=torch.float64)
    assert lam.shape == (1000,)
    # t = 1: alpha_bar = 1 - 1e-4, so lam = log((1 - 1e-4) / 1e-4)
    assert lam[0].item() == pytest.approx(math.log((1 - 1e-4) / 1e-4), rel=1e-12)


def test_ddpm_with_one_timestep_is_valid_and_is_its_beta():
    lam = schedules.ddpm_log_snr(1, 0.1, 0.2, dtype=torch.float64)
    # linspace(0.1, 0.2, 1) is [0.1]: alpha_bar_1 = 0.9
    assert lam.tolist() == pytest.approx([math.log(0.9 / 0.1)], rel=1e-12)


@pytest.mark.parametrize(("n", "b0", "b1"), [
    (0, 1e-4, 0.02),     # no timestep
    (10, 0.0, 0.02),     # beta_start must be > 0
    (10, 0.02, 0.02),    # beta_start < beta_end strictly
    (10, 1e-4, 1.0),     # beta_end < 1 (alpha_bar would reach 0)
    (10, 0.5, 1.5),
])
def test_ddpm_rejects_each_invalid_input_with_the_rule(n, b0, b1):
    with pytest.raises(ValueError, match=r"need n_timesteps >= 1 and 0 < beta_start < beta_end < 1"):
        schedules.ddpm_log_snr(n, b0, b1)


def test_ddpm_returns_float32_unless_asked():
    assert schedules.ddpm_log_snr(10).dtype == torch.float32


def test_default_log_snr_range_is_minus_20_to_20():
    # the paper's range: u = 0 is lam_max = 20 (data), u = 1 is lam_min = -20 (noise)
    u = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert schedules.log_snr_uniform(u).tolist() == pytest.approx([20.0, 0.0, -20.0], abs=1e-12)
    assert schedules.log_snr_cosine(u).tolist() == pytest.approx([20.0, 0.0, -20.0], abs=1e-9)
    for name in ("cosine", "uniform"):
        lams = schedules.sampling_lams(4, schedule=name, dtype=torch.float64)
        assert (lams[0].item(), lams[-1].item()) == pytest.approx((-20.0, 20.0), abs=1e-9)


@pytest.mark.parametrize("n_steps", [True, 2.5, "4", -3])
def test_sampling_lams_wants_a_positive_int(n_steps):
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        schedules.sampling_lams(n_steps)


def test_sampling_lams_in_float64_is_the_cosine_formula_at_exact_thirds():
    # lam(u) = -2 log tan(a u + b), b = atan(exp(-lam_max / 2)), a = atan(exp(-lam_min / 2)) - b, at u = 1, 2/3, 1/3, 0
    lo, hi = -7.0, 11.0
    b = math.atan(math.exp(-hi / 2))
    a = math.atan(math.exp(-lo / 2)) - b
    expected = [-2 * math.log(math.tan(a * u + b)) for u in (1.0, 2 / 3, 1 / 3, 0.0)]
    lams = schedules.sampling_lams(3, lo, hi, dtype=torch.float64)
    assert lams.dtype == torch.float64
    assert lams.tolist() == pytest.approx(expected, rel=1e-13, abs=1e-13)


def test_alpha_sigma_takes_numbers_and_integer_tensors_in_the_default_dtype():
    # alpha^2 = sigmoid(lam): at lam = 0 both scales are sqrt(1/2); at lam = log 3, alpha^2 = 3/4 and sigma^2 = 1/4
    for lam in (0, 0.0, np.float64(0.0), torch.tensor(0)):
        alpha, sigma = schedules.alpha_sigma(lam)
        # a number becomes torch's default float dtype, even numpy's float64 (a Python float subclass)
        assert alpha.dtype == torch.get_default_dtype() and alpha.shape == ()
        assert (alpha.item(), sigma.item()) == pytest.approx((math.sqrt(0.5), math.sqrt(0.5)), rel=1e-6)
    alpha, sigma = schedules.alpha_sigma(math.log(3.0))
    assert (alpha.item(), sigma.item()) == pytest.approx((math.sqrt(0.75), 0.5), rel=1e-6)
    assert schedules.log_snr_uniform(0.25).item() == pytest.approx(10.0)
