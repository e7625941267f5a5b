"""The training step's pieces: the objectives pass the recipe on to their loss, and the learning-rate schedule.

Written for mutation testing (docs/mutation.md). The losses are replaced by recorders, so what is checked is the
call the objective makes, field by field, against the recipe.
"""

import math
from types import SimpleNamespace

import pytest
import torch

from minicfg import train

RECIPE = SimpleNamespace(p_uncond=0.15, lam_min=-7.0, lam_max=9.0, density="lognormal", weighting="sigmoid",
                         weighting_param=3.5)


def _recorder(calls):
    def loss(*args, **kwargs):
        calls.append((args, kwargs))
        return torch.tensor(0.0)

    return loss


def test_the_diffusion_objectives_pass_every_recipe_setting_to_prediction_loss(monkeypatch):
    calls = []
    monkeypatch.setattr(train, "prediction_loss", _recorder(calls))
    model, x, labels, g = object(), torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 2, 3]), torch.Generator()
    rows = slice(2, 4)
    for name in ("eps", "v", "edm"):
        train.OBJECTIVES[name].loss(model, x, labels, RECIPE, 10, g, rows=rows)
    assert len(calls) == 3
    for args, kwargs in calls:
        assert args == (model, x, labels, 0.15, 10)
        assert kwargs == dict(generator=g, lam_min=-7.0, lam_max=9.0, density="lognormal", weighting="sigmoid",
                              weighting_param=3.5, rows=rows)


def test_the_noisy_classifier_objective_passes_the_recipe_to_classifier_loss(monkeypatch):
    calls = []
    monkeypatch.setattr(train, "classifier_loss", _recorder(calls))
    model, x, labels, g = object(), torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 2, 3]), torch.Generator()
    rows = slice(0, 2)
    train.OBJECTIVES["noisy_classifier"].loss(model, x, labels, RECIPE, 10, g, rows=rows)
    assert calls == [((model, x, labels), dict(generator=g, lam_min=-7.0, lam_max=9.0, rows=rows))]


def test_learning_rate_warms_up_linearly_then_decays_on_a_cosine_to_its_floor():
    # warm-up: (step + 1) / warmup; then final + (1 - final) (1 + cos(pi progress)) / 2, progress over the rest
    recipe = SimpleNamespace(warmup_steps=4, final_lr_frac=0.1)
    fn = train._lr_lambda(recipe, 14)
    expected = {0: 0.25, 1: 0.5, 3: 1.0, 4: 1.0, 9: 0.1 + 0.9 * 0.5, 14: 0.1, 30: 0.1}
    assert {step: fn(step) for step in expected} == pytest.approx(expected, abs=1e-12)
    assert fn(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 2 / 10)), abs=1e-12)
    no_warmup = train._lr_lambda(SimpleNamespace(warmup_steps=0, final_lr_frac=0.0), 1)
    assert (no_warmup(0), no_warmup(1)) == pytest.approx((1.0, 0.0), abs=1e-12)
