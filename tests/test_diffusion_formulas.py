"""The losses of the diffusion module at their edges: default log-SNR range, the rows a data-parallel process
classifies, half-precision images, and the errors a wrong call gets.

Written for the survivors of mutation testing (docs/mutation.md). The expected values are stated by hand with the
helpers of test_core.py (the cosine schedule lam(u) = -2 log tan(a u + b), z = alpha x + sigma eps with
alpha^2 = sigmoid(lam)), replaying the generator's draws in the library's order: u per sample, then eps.
"""

import math
import re

import pytest
import torch
from test_core import _batch, _cosine_lam_by_hand, _FixedClassifier, _noised_by_hand

from minicfg import diffusion


def _cross_entropy_by_hand(logits, labels):
    """-log softmax(logits)[label], per sample."""
    top = logits.max(1, keepdim=True).values
    log_norm = torch.log(torch.exp(logits - top).sum(1)) + top[:, 0]
    return log_norm - logits[torch.arange(len(labels)), labels]


def _classifier_loss_by_hand(classifier, x, labels, seed, lam_min, lam_max):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(x.shape[0], generator=g, dtype=x.dtype)
    eps = torch.randn(x.shape, generator=g, dtype=x.dtype)
    lam = _cosine_lam_by_hand(u, lam_min, lam_max)
    return _cross_entropy_by_hand(classifier(_noised_by_hand(x, lam, eps), lam), labels)


def test_classifier_loss_draws_lam_from_minus_20_to_20_by_default():
    x, labels = _batch(num_classes=10, seed=2)
    classifier = _FixedClassifier(x[0].numel(), 10)
    expected = _classifier_loss_by_hand(classifier, x, labels, 5, -20.0, 20.0)
    got = diffusion.classifier_loss(classifier, x, labels, torch.Generator().manual_seed(5), reduction="none")
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-5)


def test_classifier_loss_on_rows_is_those_rows_of_the_whole_batch_draws():
    """rows= classifies only its rows, with lam and eps drawn for the whole batch (each process of a data-parallel
    run draws the same numbers and keeps its share)."""
    x, labels = _batch(n=12, num_classes=10, seed=3)
    classifier = _FixedClassifier(x[0].numel(), 10)
    expected = _classifier_loss_by_hand(classifier, x, labels, 9, -20.0, 20.0)[4:9]
    got = diffusion.classifier_loss(classifier, x, labels, torch.Generator().manual_seed(9), reduction="none",
                                    rows=slice(4, 9))
    assert got.shape == (5,)
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["eps", "classifier"])
@pytest.mark.parametrize("bad", [(3,), (4, 1)])
def test_the_losses_want_one_label_per_image_and_say_so(loss, bad):
    x = torch.zeros(4, 3)
    labels = torch.zeros(bad, dtype=torch.long)
    message = re.escape(f"need labels of shape (4,) for x of shape (4, 3), got {bad}")
    with pytest.raises(ValueError, match=message):
        if loss == "eps":
            diffusion.eps_loss(lambda z, lam, c: z, x, labels, 0.1, 10)
        else:
            diffusion.classifier_loss(lambda z, lam: z, x, labels)


def test_eps_loss_names_the_reductions_it_knows():
    x, labels = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=re.escape("reduction must be 'mean' or 'none', got 'sum'")):
        diffusion.eps_loss(lambda z, lam, c: z, x, labels, 0.1, 10, reduction="sum")


def test_classifier_loss_refuses_the_null_label():
    """A classifier learns the real classes 0..C-1 only: the null label C is an error that names the range."""
    x, labels = _batch(n=4, num_classes=10, seed=4)
    labels[2] = 10
    classifier = _FixedClassifier(x[0].numel(), 10)
    with pytest.raises(ValueError, match=re.escape("labels must lie in [0, 9] (10 classes), got min")):
        diffusion.classifier_loss(classifier, x, labels)


@pytest.mark.parametrize(("z_shape", "x_shape"), [((3, 4), (3, 1)), ((3, 1), (3, 4))])
def test_eps_from_x_refuses_shapes_that_would_broadcast(z_shape, x_shape):
    """(z - alpha x) / sigma would broadcast (3, 1) against (3, 4) silently; the error names both shapes."""
    with pytest.raises(ValueError, match=re.escape(f"shapes must match, got {{'z': {z_shape}, 'x': {x_shape}}}")):
        diffusion.eps_from_x(torch.zeros(z_shape), 0.0, torch.zeros(x_shape))


def test_a_label_is_dropped_when_its_uniform_is_strictly_below_p_uncond():
    """Alg. 1 drops a label with probability p_uncond: u < p_uncond for u ~ U[0, 1), so a draw equal to p_uncond
    keeps its label. p_uncond is set to one of the draws (replayed from the same generator) to reach that edge."""
    labels = torch.arange(8) % 10
    u = torch.rand(labels.shape, generator=torch.Generator().manual_seed(4))
    p = u[3].item()
    expected = torch.where(u < p, torch.tensor(10), labels)
    assert expected[3] == labels[3] and 0 < int((expected == 10).sum()) < 8
    got = diffusion.drop_labels(labels, p, 10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(got, expected)


@pytest.mark.parametrize(("lam", "lam_next"), [(-2, 0.5), (-2.0, 0.5), (1, 3)])
def test_reverse_variance_takes_plain_numbers_in_the_default_dtype(lam, lam_next):
    """(1 - e^(lam - lam')) (sigma_lam'^2)^(1 - v) (sigma_lam^2)^v with sigma^2 = 1 / (1 + e^lam), by hand;
    an integer lam is a number like any other (lam_next = 0.5 must not be rounded to lam's integer type)."""
    v = 0.3

    def sig2(t):
        return 1.0 / (1.0 + math.exp(t))

    expected = -math.expm1(lam - lam_next) * sig2(lam_next) ** (1 - v) * sig2(lam) ** v
    got = diffusion.reverse_variance(lam, lam_next, v)
    assert got.dtype == torch.get_default_dtype()
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_reverse_variance_works_in_lams_dtype():
    """lam_next follows lam's dtype: a float64 lam keeps lam_next = 0.1 to float64 precision, and a float32 lam
    gives a float32 variance even for a float64 lam_next."""
    v = 0.3

    def sig2(t):
        return 1.0 / (1.0 + math.exp(t))

    expected = -math.expm1(-1.0 - 0.1) * sig2(0.1) ** (1 - v) * sig2(-1.0) ** v
    got = diffusion.reverse_variance(torch.tensor(-1.0, dtype=torch.float64), 0.1, v)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, rel=1e-13)
    got32 = diffusion.reverse_variance(torch.tensor(-1.0), torch.tensor(0.1, dtype=torch.float64), v)
    assert got32.dtype == torch.float32
    assert got32.item() == pytest.approx(expected, rel=1e-6)


def test_reverse_variance_names_the_order_it_needs():
    with pytest.raises(ValueError, match=re.escape("need lam < lam_next (log-SNR increases towards the data), "
                                                   "got lam=")):
        diffusion.reverse_variance(1.0, 0.5, 0.3)


@pytest.mark.parametrize(("z_shape", "eps_shape"), [((3, 4), (3, 1)), ((3, 1), (3, 4))])
def test_x_from_eps_refuses_shapes_that_would_broadcast(z_shape, eps_shape):
    with pytest.raises(ValueError, match=re.escape(f"shapes must match, got {{'z': {z_shape}, 'eps': {eps_shape}}}")):
        diffusion.x_from_eps(torch.zeros(z_shape), 0.0, torch.zeros(eps_shape))


def test_equal_log_snrs_are_not_a_step():
    """lam < lam' strictly: at lam = lam' the variances are 0 (1 - e^0), a step that goes nowhere, so it is an error
    rather than a silent zero."""
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=re.escape("need lam < lam_next")):
        diffusion.reverse_variance(1.0, 1.0, 0.3)
    with pytest.raises(ValueError, match=re.escape("need lam < lam_next")):
        diffusion.posterior(z, z, 1.0, 1.0)
    with pytest.raises(ValueError, match=re.escape("need lam < lam_src")):
        diffusion.q_transition(z, 1.0, 1.0)


def test_expand_lam_names_the_shape_it_wants():
    """A lam that does not match x's leading dimensions: the error names both shapes and the batch size B."""
    message = ("lam of shape (3,) does not match the leading dimensions of a tensor of shape (4, 2, 3); "
               "pass one lam per sample, shape (4,), or a scalar")
    with pytest.raises(ValueError, match=re.escape(message)):
        diffusion.expand_lam(torch.zeros(3), torch.zeros(4, 2, 3))
    # a 0-d x has no batch dimension: only a scalar lam fits it, and the message has no B to offer
    message = ("lam of shape (2,) does not match the leading dimensions of a tensor of shape (); "
               "pass one lam per sample, shape (,), or a scalar")
    with pytest.raises(ValueError, match=re.escape(message)):
        diffusion.expand_lam(torch.zeros(2), torch.tensor(0.5))
