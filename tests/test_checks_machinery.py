"""The machinery of the exercise checks (minicfg.checks) on inputs made by hand: the comparison (_mismatch), the
messages of _check (an interrupted cell, a refused library function), the delegation and tripwire detectors, and the
references and stand-ins the checks compare with, each against its formula written out here.

The refusal tests use a function of the standard library (colorsys.rgb_to_yiq) as the "library" an exercise
re-implements, so they hold however minicfg's own functions are wrapped (e.g. by a mutation-testing tool)."""

import colorsys
import functools
import importlib
import math
import types

import pytest
import torch

from minicfg import checks

TOL32 = checks.TOLERANCE[torch.float32]
SPEC = "colorsys:rgb_to_yiq"


def _refusal(exercise: str, library: str) -> str:
    return (f"{exercise}: write {exercise} yourself; the library's own {library} is not allowed here: this exercise "
            f"re-implements it (torch and the helpers the exercise names are fine)")


# -- _mismatch and its preview -------------------------------------------------------------------------------------
def test_a_result_with_too_few_outputs_is_refused_with_the_names_of_the_outputs():
    a = torch.zeros(2)
    assert checks._mismatch((a, a), (a,), ("mean", "var"), TOL32) == "returned tuple; expected a tuple (mean, var)"
    assert checks._mismatch((a, a), a, ("mean", "var"), TOL32) == "returned Tensor; expected a tuple (mean, var)"


def test_a_reference_with_more_outputs_than_names_is_an_error_not_a_partial_comparison():
    a = torch.zeros(2)
    with pytest.raises(ValueError, match="zip"):
        checks._mismatch((a, torch.ones(2)), a, ("x",), TOL32)


def test_one_output_is_described_without_a_label_and_one_of_two_with_its_name():
    exp, act = torch.zeros(2), torch.tensor([0.0, 1.0])
    assert checks._mismatch((exp,), act, ("z",), TOL32) == ("expected 0 at index (1,), got 1 (1 of 2 values differ)\n"
                                                            "    expected: [0, 0]\n    actual:   [0, 1]")
    assert checks._mismatch((exp, exp), (exp, act), ("mean", "var"), TOL32).startswith("var: expected 0 at index (1,)")


def test_the_absolute_tolerance_is_used():
    """float32's atol of 1e-6: 5e-7 away from 0 passes, 2e-6 does not (torch's own default atol is 1e-8)."""
    zero = torch.zeros(1)
    assert checks._mismatch((zero,), torch.full((1,), 5e-7), ("x",), TOL32) is None
    assert checks._mismatch((zero,), torch.full((1,), 2e-6), ("x",), TOL32) is not None


def test_the_preview_shows_six_values_and_dots_only_when_there_are_more():
    assert checks._preview(torch.tensor([1.0, 2.5])) == "[1, 2.5]"
    assert checks._preview(torch.arange(6.0)) == "[0, 1, 2, 3, 4, 5]"
    assert checks._preview(torch.arange(7.0)) == "[0, 1, 2, 3, 4, 5, ...]"


# -- _check's messages ---------------------------------------------------------------------------------------------
def test_an_interrupted_cell_names_the_input_it_was_running():
    def alpha_sigma(lam):
        raise KeyboardInterrupt

    with pytest.raises(AssertionError) as info:
        checks.check_alpha_sigma(alpha_sigma)
    assert str(info.value) == ("alpha_sigma was interrupted on the input 'lam = 0' (lam=tensor([0.0], shape (1,), "
                               "torch.float32)): it ran past the time limit of a cell (an endless loop?) or was "
                               "stopped by hand")


def _luma(fn, reimplements=(SPEC,)):
    """A one-case exercise 'luma': Y of an RGB colour with only red, 0.3 r (colorsys's YIQ weights)."""
    cases = [checks.Case("pure red", (torch.tensor([0.5]),))]
    checks._check("luma", fn, cases, lambda r: 0.3 * r, ("y",), [], reimplements=reimplements)


def _luma_by_colorsys(r):
    return torch.tensor([colorsys.rgb_to_yiq(float(r), 0.0, 0.0)[0]])


def test_a_library_function_called_inside_is_refused_and_restored(capsys):
    original = colorsys.rgb_to_yiq.__code__
    with pytest.raises(AssertionError) as info:
        _luma(_luma_by_colorsys)
    assert str(info.value) == _refusal("luma", "colorsys.rgb_to_yiq")
    assert colorsys.rgb_to_yiq.__code__ is original and colorsys.rgb_to_yiq(1.0, 0.0, 0.0)[0] == pytest.approx(0.3)
    _luma(_luma_by_colorsys, reimplements=())  # the same answer passes when nothing is re-implemented
    assert capsys.readouterr().out == "luma: all 1 inputs pass\n"


def test_a_refused_call_is_found_behind_the_error_it_caused():
    def luma(r):
        try:
            return _luma_by_colorsys(r)
        except RuntimeError as err:
            raise ValueError("no luck") from err

    with pytest.raises(AssertionError) as info:
        _luma(luma)
    assert str(info.value) == _refusal("luma", "colorsys.rgb_to_yiq")


def test_the_library_function_itself_is_refused_before_it_runs():
    with pytest.raises(AssertionError) as info:
        _luma(colorsys.rgb_to_yiq)
    assert str(info.value) == _refusal("luma", "colorsys.rgb_to_yiq")


# exercise -> the library function each exercise re-implements (the first of its reimplements)
LIBRARY = {"alpha_sigma": "minicfg.schedules:alpha_sigma", "q_sample": "minicfg.diffusion:q_sample",
           "log_snr_cosine": "minicfg.schedules:log_snr_cosine", "posterior": "minicfg.diffusion:posterior",
           "ancestral_step": "minicfg.samplers:ancestral",
           "implicit_classifier_grad": "minicfg.guidance:implicit_classifier_grad",
           "cfg_combination": "minicfg.guidance:cfg", "classifier_guided_eps": "minicfg.guidance:classifier_guided_eps",
           "label_dropout_loss": "minicfg.diffusion:eps_loss",
           "guidance_scale_to_w": "minicfg.guidance:w_from_guidance_scale", "ddim_step": "minicfg.samplers:ddim",
           "guided_ddim": "minicfg.samplers:ddim", "fid_from_stats": "minicfg.metrics:frechet_distance",
           "precision_recall_knn": "minicfg.metrics:precision_recall",
           "interval_cfg": "minicfg.guidance_variants:interval_guidance",
           "zero_shot_predict": "minicfg.zero_shot:classify"}


@pytest.mark.parametrize("name", list(LIBRARY))
def test_handing_in_the_library_function_itself_is_refused(name):
    module, _, function = LIBRARY[name].partition(":")
    with pytest.raises(AssertionError) as info:
        checks.EXERCISES[name](getattr(importlib.import_module(module), function))
    assert str(info.value) == _refusal(name, f"{module}.{function}")


# -- the detectors ----------------------------------------------------------------------------------------------------
def test_delegation_is_found_through_a_copy_of_the_code_a_partial_and_a_method():
    lib = colorsys.rgb_to_yiq
    library = {SPEC: lib}
    assert checks._delegated_to(types.FunctionType(lib.__code__, lib.__globals__), library) == SPEC
    assert checks._delegated_to(functools.partial(lib, 0.5), library) == SPEC
    assert checks._delegated_to(types.MethodType(functools.partial(lib), object()), library) == SPEC  # via __func__
    assert checks._delegated_to(colorsys.rgb_to_hsv, library) is None


def test_a_cycle_of_wrapped_functions_ends_the_search():
    def a():
        pass

    def b():
        pass

    a.__wrapped__, b.__wrapped__ = b, a
    assert checks._delegated_to(a, {SPEC: colorsys.rgb_to_yiq}) is None


def _raise_tripped():
    raise RuntimeError("refused")


def test_a_tripwire_is_found_through_the_cause_and_the_context_of_an_error():
    trips = {_raise_tripped.__code__: SPEC}
    try:
        try:
            _raise_tripped()
        except RuntimeError as err:
            raise ValueError("caused") from err
    except ValueError as err:
        caused = err
    try:
        try:
            _raise_tripped()
        except RuntimeError:
            raise ValueError("during")  # noqa: B904 (the context is what is looked at)
    except ValueError as err:
        during = err
    assert checks._tripped(caused, trips) == SPEC and checks._tripped(during, trips) == SPEC
    assert checks._tripped(ValueError("unrelated"), trips) is None


def test_a_cycle_of_error_contexts_ends_the_search():
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    assert checks._tripped(first, {_raise_tripped.__code__: SPEC}) is None


def test_a_missing_library_function_is_named():
    assert checks._library_function(SPEC) is colorsys.rgb_to_yiq
    with pytest.raises(ValueError, match=r"^reimplements='colorsys:no_such_function': expected 'module.path:function'"):
        checks._library_function("colorsys:no_such_function")


# -- the references and stand-ins, against their formulas --------------------------------------------------------------
def test_the_toy_model_is_linear_in_z_lam_and_the_label():
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    lam, labels = torch.tensor([-2.0, 4.0]), torch.tensor([1, 10])
    expected = 0.6 * z + 0.05 * lam.view(2, 1, 1, 1) + 0.3 * torch.tensor([2.0, 11.0]).view(2, 1, 1, 1)
    torch.testing.assert_close(checks._toy_model(z, lam, labels), expected)


def test_the_stand_in_predictions_are_their_formulas():
    z, lam = torch.tensor([[1.0, -2.0], [0.5, 0.0]]), torch.tensor([-4.0, 8.0])
    t = torch.tensor([[math.tanh(-1.0)], [math.tanh(2.0)]])
    torch.testing.assert_close(checks._stand_in_cond(z, lam), 0.8 * z + 0.2 * t + 0.1)
    torch.testing.assert_close(checks._stand_in_uncond(z, lam), 0.9 * z - 0.1 * t)


def test_the_w_schedules_of_the_guided_ddim_check():
    lam = torch.tensor([-2.5, -2.0, 0.0, 3.0, 3.5], dtype=torch.float64)
    w = checks.w_in_an_interval(lam)
    assert w.dtype == torch.float64 and w.tolist() == [0.0, 3.0, 3.0, 3.0, 0.0]
    grow = checks.w_growing_with_lam(torch.tensor([-5.0, 0.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(grow, torch.tensor([1 - math.tanh(1), 1.0, 1 + math.tanh(1)], dtype=torch.float64))
    assert checks.w_constant(lam).tolist() == [2.0] * 5


def test_a_per_sample_w_is_shaped_to_broadcast_over_the_images():
    w = checks._w(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3, 5, 7))
    assert w.shape == (3, 1, 1) and w.flatten().tolist() == [1.0, 2.0, 3.0]
    assert float(checks._w(2.0, torch.zeros(3, 5, 7))) == 2.0


def test_per_class_rates_when_a_class_has_no_hit():
    rates = checks._per_class(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 2, 2]), 4)[:3]
    assert rates.tolist() == [1.0, 0.0, 0.5]  # class 3 has no sample: 0 / 0
    assert checks._per_class(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]), 3).tolist() == [1.0, 0.0, 0.0]


def test_the_ancestral_reference_is_the_papers_step_written_out():
    """mean of Eq. 3 at x~ = (z - sigma eps) / alpha, plus sqrt((var~)^(1 - v) (var_fwd)^v) noise, where
    var~ = (1 - e^(lam - lam')) sigma_lam'^2 and var_fwd = (1 - e^(lam - lam')) sigma_lam^2."""
    g = torch.Generator().manual_seed(1)
    z, eps, noise = (torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(3))
    lam, lam_next, v = torch.tensor([-3.0, 1.0], dtype=torch.float64), torch.tensor([-1.0, 1.5]).double(), 0.3
    a, s = torch.sigmoid(lam).sqrt()[:, None], torch.sigmoid(-lam).sqrt()[:, None]
    a_n, s_n = torch.sigmoid(lam_next).sqrt()[:, None], torch.sigmoid(-lam_next).sqrt()[:, None]
    r = torch.exp(lam - lam_next)[:, None]
    x = (z - s * eps) / a
    mean = r * (a_n / a) * z + (1 - r) * a_n * x
    std = (((1 - r) * s_n**2) ** (1 - v) * ((1 - r) * s**2) ** v).sqrt()
    torch.testing.assert_close(checks._ancestral_step(z, eps, lam, lam_next, noise, v), mean + std * noise,
                               rtol=1e-12, atol=1e-12)
