"""Edges of the metrics that the digit tests do not reach: class_spread's smallest inputs and its messages, and
classifier_fid against the Frechet distance written out with numpy on the evaluator's own features.

Written for mutation testing (docs/mutation.md).
"""

import re

import numpy as np
import pytest
import torch

from minicfg import data
from minicfg.checkpoint import shipped_weights
from minicfg.evaluator import load_evaluator
from minicfg.metrics import class_spread, classifier_fid, features_and_probs, load_reference


def test_two_feature_rows_are_enough_for_a_spread():
    # N = 2: one point per class at 0 and 2 (overall mean 1); N - 1 = 1: within 0, between 1 + 1 = 2
    out = class_spread(np.array([[0.0], [2.0]]), [0, 1])
    assert out == {"total": 2.0, "within": 0.0, "between": 2.0, "classes": [0, 1]}


def test_one_feature_dimension_is_enough_but_one_row_is_not():
    out = class_spread(np.array([[0.0], [2.0], [4.0]]), [0, 0, 0])  # d = 1
    assert out["total"] == pytest.approx(4.0)  # the variance of 0, 2, 4
    with pytest.raises(ValueError, match=re.escape("need features of shape (N >= 2, d), got (1, 3)")):
        class_spread(np.zeros((1, 3)), [0])


def test_the_label_shape_message_names_the_number_of_rows():
    with pytest.raises(ValueError, match=re.escape("labels of shape (5,), got (2,)")):
        class_spread(np.zeros((5, 3)), [0, 1])


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((c + c.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _frechet_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2), unbiased covariances (Heusel et al. 2017)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    c_a, c_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(c_a)
    cross = _sqrtm_psd(root_a @ c_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(c_a + c_b - 2 * cross))


def _fid_of_features(samples, reference, evaluator) -> float:
    """The Frechet distance by numpy between ``evaluator``'s features of the two image sets."""
    a = features_and_probs(samples, evaluator)[0].double().numpy()
    b = features_and_probs(reference, evaluator)[0].double().numpy()
    return _frechet_by_hand(a, b)


@pytest.fixture(scope="module")
def digits():
    images, _ = data.mnist(train=False).tensors
    return images[:300], images[300:700]


def test_classifier_fid_is_the_frechet_distance_of_the_evaluators_features(digits):
    samples, reference = digits
    model = shipped_weights("mnist", "evaluator")  # a weights path, as the CLI passes it
    expected = _fid_of_features(samples, reference, model)
    assert classifier_fid(samples, ref=reference, evaluator=model) == pytest.approx(expected, rel=1e-3)
    # the shipped evaluator when none is given, and the distance of a set to itself is zero
    assert classifier_fid(samples, ref=reference) == pytest.approx(expected, rel=1e-3)
    assert abs(classifier_fid(samples, ref=samples, evaluator=model)) < 1e-3 * expected


def test_classifier_fid_grows_when_the_samples_are_not_digits(digits):
    samples, reference = digits
    noise = torch.rand(samples.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert classifier_fid(noise, ref=reference) > 10 * classifier_fid(samples, ref=reference)


def test_classifier_fid_uses_the_evaluator_it_is_given(digits):
    # an evaluator of its own (the shipped one with its weights perturbed): the distance is the one of its features,
    # not of the shipped evaluator's
    samples, reference = digits
    own = load_evaluator(dataset="mnist")[0]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in own.parameters():
            p.add_(0.3 * p.std() * torch.randn(p.shape, generator=g))
    expected = _fid_of_features(samples, reference, own)
    assert classifier_fid(samples, ref=reference, evaluator=own) == pytest.approx(expected, rel=1e-3)
    assert abs(expected - classifier_fid(samples, ref=reference)) > 0.05 * expected


def test_classifier_fid_defaults_to_the_test_split_of_the_data_set_named():
    # the default reference is the test split of `dataset` (the shipped subset without MINICFG_DATA), measured
    # with that data set's evaluator: for CIFAR-10 images, CIFAR-10's test features (computed once per process)
    samples = data.cifar10(train=False).tensors[0][:200]
    reference = load_reference("test", dataset="cifar10").features.double().numpy()
    expected = _frechet_by_hand(features_and_probs(samples, dataset="cifar10")[0].double().numpy(), reference)
    assert classifier_fid(samples, dataset="cifar10") == pytest.approx(expected, rel=1e-3)
