"""A failing exercise check (minicfg.checks) names the FIRST input it fails on, and shows that input: wrong answers
that are right on some inputs and wrong on others (float64 only, a per-sample w only, extreme lam only, ...) show
that each input is what its name says."""

import pytest
from test_checks import _wrong_answer

from minicfg import checks


def _failure(name: str, substitutions: list[tuple[str, str]]) -> str:
    with pytest.raises(AssertionError) as info:
        checks.EXERCISES[name](_wrong_answer(name, substitutions))
    return str(info.value)


def _wrong_on(message: str, name: str, case: str) -> None:
    assert message.startswith(f"{name}: wrong result on the input '{case}'\n  inputs: "), message


# exercise -> the line of its solution that returns, for answers that round the result to float32
RETURNS = {"alpha_sigma": ("return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()",
                           "return torch.sigmoid(lam).sqrt().float(), torch.sigmoid(-lam).sqrt().float()"),
           "q_sample": ("return alpha * x + sigma * eps", "return (alpha * x + sigma * eps).float()"),
           "posterior": ("return mean, var.expand_as(z)", "return mean.float(), var.expand_as(z).float()"),
           "ancestral_step": ("return mean + std * noise", "return (mean + std * noise).float()"),
           "cfg_combination": ("return (1 + w) * eps_cond - w * eps_uncond",
                               "return ((1 + w) * eps_cond - w * eps_uncond).float()"),
           "guidance_scale_to_w": ("return guidance_scale - 1", "return (guidance_scale - 1).float()"),
           "interval_cfg": ("return (1 + w_now) * eps_cond - w_now * eps_uncond",
                            "return ((1 + w_now) * eps_cond - w_now * eps_uncond).float()")}
# exercise -> its one float64 input, and what its inputs line shows of it (every tensor float64)
FLOAT64 = {"alpha_sigma": ("float64", "lam=tensor of shape (11,), torch.float64"),
           "q_sample": ("float64", "x=tensor of shape (3, 2, 4, 6), torch.float64, lam=tensor([-7.0, 0.0, 7.0], "
                                   "shape (3,), torch.float64), eps=tensor of shape (3, 2, 4, 6), torch.float64"),
           "posterior": ("float64", "z=tensor of shape (3, 2, 4, 6), torch.float64, x=tensor of shape (3, 2, 4, 6), "
                                    "torch.float64, lam=tensor([-7.0, 0.0, 5.0], shape (3,), torch.float64), "
                                    "lam_next=tensor([-6.5, 0.25, 9.0], shape (3,), torch.float64)"),
           "ancestral_step": ("float64, 2-D points, v = 0.3",
                              "z=tensor of shape (4, 2), torch.float64, eps=tensor of shape (4, 2), torch.float64, "
                              "lam=tensor([-6.0, -1.0, 0.0, 3.0], shape (4,), torch.float64), "
                              "lam_next=tensor([-5.0, 0.0, 2.0, 3.5], shape (4,), torch.float64), "
                              "noise=tensor of shape (4, 2), torch.float64, v=0.3"),
           "cfg_combination": ("float64, w = 0.5", "eps_cond=tensor of shape (5, 2), torch.float64, "
                                                   "eps_uncond=tensor of shape (5, 2), torch.float64, w=0.5"),
           "guidance_scale_to_w": ("float64", "guidance_scale=tensor of shape (6,), torch.float64"),
           "interval_cfg": ("float64, EDM2's interval [-0.95, 2.52]", "w=2.0, lam_low=-0.95, lam_high=2.52")}


@pytest.mark.parametrize("name", list(RETURNS))
def test_a_float32_result_fails_first_on_the_float64_input_whose_tensors_are_all_float64(name):
    message = _failure(name, [RETURNS[name]])
    case, inputs = FLOAT64[name]
    _wrong_on(message, name, case)
    assert inputs in message.splitlines()[1]
    assert "returned dtype torch.float32, expected torch.float64 (keep the dtype of the inputs)" in message


def test_the_first_input_is_lam_0_and_the_message_shows_its_value():
    message = _failure("alpha_sigma", [("torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()",
                                        "torch.sigmoid(lam), torch.sigmoid(-lam)")])
    assert message.splitlines()[:3] == ["alpha_sigma: wrong result on the input 'lam = 0'",
                                        "  inputs: lam=tensor([0.0], shape (1,), torch.float32)",
                                        "  alpha: expected 0.707107 at index (0,), got 0.5 (1 of 1 values differ)"]


def test_alpha_sigma_has_no_absolute_slack_for_the_tiny_sigma_at_large_lam():
    """sqrt(sigmoid(-lam) + 1e-12) is off by 7e-7 at lam = 30 (3e-7 there), less than float32's usual atol of 1e-6:
    alpha_sigma's check compares relative errors only, so the extreme input fails."""
    message = _failure("alpha_sigma", [("torch.sigmoid(-lam).sqrt()", "(torch.sigmoid(-lam) + 1e-12).sqrt()")])
    _wrong_on(message, "alpha_sigma", "extreme lam: +-20 and +-30, float32")
    assert message.splitlines()[2].startswith("  sigma: expected ")
    assert message.endswith("\n  hint: the usual mistakes: "
                            "alpha^2 used where alpha was meant: alpha = sqrt(sigmoid(lam)), not sigmoid(lam); "
                            "lam order reversed: large lam is the data end, so alpha^2 = sigmoid(lam) and "
                            "sigma^2 = sigmoid(-lam); sigma = sqrt(1 - alpha^2) rounds to 0 at large lam in float32; "
                            "compute sigma^2 as sigmoid(-lam)")


@pytest.mark.parametrize(("name", "old", "new", "case"), [
    ("posterior", "alpha, _ = schedules.alpha_sigma(lam)", "alpha = (1 - schedules.alpha_sigma(lam)[1] ** 2).sqrt()",
     "extreme lam: -20 -> -19 and 19 -> 20"),
    ("ddim_step", "alpha, sigma = schedules.alpha_sigma(lam.reshape(shape))",
     "_, sigma = schedules.alpha_sigma(lam.reshape(shape))\n    alpha = (1 - sigma**2).sqrt()",
     "extreme lam: -20 -> -18 and 15 -> 20"),
])
def test_alpha_from_sqrt_1_minus_sigma_squared_fails_first_at_the_extreme_lam(name, old, new, case):
    """float32's 1 - sigma^2 is 0 at lam = -20 (alpha = 4.5e-5): right at moderate lam, wrong at the extreme one."""
    _wrong_on(_failure(name, [(old, new)]), name, case)


def test_a_posterior_variance_of_shape_b_1_1_1_that_broadcasts_passes(capsys):
    checks.check_posterior(_wrong_answer("posterior", [("return mean, var.expand_as(z)", "return mean, var")]))
    assert capsys.readouterr().out == "posterior: all 4 inputs pass\n"


def test_the_wrong_output_of_two_is_named_in_the_message():
    message = _failure("posterior", [("var = (1 - ratio) * sigma_next**2",
                                      "var = (1 - ratio) * schedules.alpha_sigma(lam)[1] ** 2")])
    assert message.splitlines()[2].startswith("  var: expected ")


def test_a_std_taken_as_a_number_works_for_a_batch_of_one_and_raises_on_the_next_input():
    message = _failure("ancestral_step", [(".sqrt().reshape((-1,) + (1,) * (z.ndim - 1))", ".sqrt().item()")])
    assert message.startswith("ancestral_step raised RuntimeError on the input 'non-square images, v = 0' "
                              "(z=tensor of shape (3, 3, 5, 7), torch.float32, ")
    assert "lam=tensor([-4.0, 0.0, 2.0], shape (3,), torch.float32), lam_next=tensor([-3.0, 1.0, 6.0], shape (3,), " \
           "torch.float32), noise=tensor of shape (3, 3, 5, 7), torch.float32, v=0.0): " in message
    assert message.endswith(f"\n  hint: {checks.SHAPES}")


def test_a_per_sample_w_left_unshaped_raises_on_the_input_with_one_w_per_sample():
    message = _failure("cfg_combination", [("w = w.reshape((-1,) + (1,) * (eps_cond.ndim - 1))", "pass")])
    assert message.startswith("cfg_combination raised RuntimeError on the input 'non-square images, one w per sample' "
                              "(eps_cond=tensor of shape (3, 3, 5, 7), torch.float32, eps_uncond=tensor of shape "
                              "(3, 3, 5, 7), torch.float32, w=tensor([0.0, 1.0, 4.0], shape (3,), torch.float32)): ")


def test_guidance_with_1_plus_w_fails_first_at_w_0_with_the_usual_hints():
    message = _failure("classifier_guided_eps", [("eps - w * sigma", "eps - (1 + w) * sigma")])
    _wrong_on(message, "classifier_guided_eps", "w = 0 (no guidance)")
    assert message.endswith("\n  hint: the usual mistakes: the sign: eps~ = eps MINUS w sigma grad log p(c | z), since "
                            "eps ~ -sigma times the score; alpha used where sigma was meant: the gradient enters in "
                            "units of noise, times sigma_lam; sigma^2 used where sigma was meant; sigma is missing: "
                            "eps~ = eps - w sigma grad")


@pytest.mark.parametrize(("old", "new", "case"), [
    # one coin for the whole batch: right when the batch of one is dropped, wrong when half the labels are
    ("torch.where(drop, ", "torch.where(drop[0], ", "non-square images, half the labels dropped"),
    # MNIST's 10 classes as the null label: right while num_classes = 10 (or nothing is dropped)
    ("torch.full_like(labels, num_classes)", "torch.full_like(labels, 10)", "float64, 3 classes"),
])
def test_label_dropout_mistakes_that_show_only_on_later_inputs(old, new, case):
    _wrong_on(_failure("label_dropout_loss", [(old, new)]), "label_dropout_loss", case)


@pytest.mark.parametrize(("new", "case"), [
    ("return (guidance_scale - 1).floor()", "diffusers' default 7.5 and a few more"),  # w = 0, -1, 1, 3, ... pass
    ("return (guidance_scale - 1).clamp(min=0)", "guidance_scale = 0 (w = -1, the unconditional model)"),
])
def test_guidance_scale_mistakes_that_show_only_on_later_inputs(new, case):
    _wrong_on(_failure("guidance_scale_to_w", [("return guidance_scale - 1", new)]), "guidance_scale_to_w", case)


@pytest.mark.xfail(strict=True, raises=RuntimeError, reason="the check's own formula for the 'own radii' mistake "
                   "(_knn_coverage(f, r, f, k)) raises for 10 real and 6 fake points, out of the check")
def test_shares_over_the_wrong_count_pass_equal_sets_and_fail_10_real_and_6_fake():
    message = _failure("precision_recall_knn", [("<= radii(real)).any(1).to(real.dtype).mean()",
                                                 "<= radii(real)).any(1).to(real.dtype).sum() / len(real)")])
    _wrong_on(message, "precision_recall_knn", "10 real and 6 fake, k = 2")
    assert message.splitlines()[2].startswith("  precision: expected ")


def test_interval_cfg_outside_the_interval_input_has_samples_below_inside_and_above():
    message = _failure("interval_cfg", [("return (1 + w_now) * eps_cond - w_now * eps_uncond",
                                         "guided = (1 + w_now) * eps_cond - w_now * eps_uncond\n"
                                         "    return torch.where(w_now != 0, guided, eps_uncond)")])
    _wrong_on(message, "interval_cfg", "non-square images: below, inside, above")
    # -3 < lam_low = -1 <= 0 <= lam_high = 2.5 < 3
    assert message.splitlines()[1].endswith("lam=tensor([-3.0, 0.0, 3.0], shape (3,), torch.float32), w=1.5, "
                                            "lam_low=-1.0, lam_high=2.5")
