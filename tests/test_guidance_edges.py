"""Classifier guidance and the guidance registry at their edges: w as a function of lam, w = 0, half-precision
classifiers, and the errors a wrong call gets.

Written for the survivors of mutation testing (docs/mutation.md). The classifier here is linear, logits = z W, so
its gradient is known by hand: grad_z log p(c | z) = W[:, c] - sum_k p_k W[:, k].
"""

import math
import re

import pytest
import torch

from minicfg import guidance, guidance_variants

DIM, CLASSES = 4, 3


def _linear_classifier(dtype=torch.float64, logits_dtype=None):
    W = torch.linspace(-1.0, 1.0, DIM * CLASSES, dtype=dtype).reshape(DIM, CLASSES)

    def classifier(z, lam):
        logits = z.flatten(1) @ W
        return logits if logits_dtype is None else logits.to(logits_dtype)

    return classifier, W


def _hand_grad(z, W, labels):
    p = torch.softmax(z.flatten(1) @ W, dim=1)
    return (W[:, labels].T - p @ W.T).reshape(z.shape)


def test_w_as_a_function_of_lam_is_evaluated_at_each_samples_lam():
    classifier, W = _linear_classifier()
    base = lambda z, lam: 0.5 * z
    z = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0]], dtype=torch.float64)
    lam = torch.tensor([-2.0, 3.0], dtype=torch.float64)
    labels = torch.tensor([2, 0])
    w_of_lam = lambda lam: torch.where(lam > 0, 3.0, 1.0).to(lam.dtype)  # w = 1 for the first sample, 3 for the second
    guided = guidance.classifier_eps_fn(base, classifier, labels, w_of_lam)(z, lam)
    sigma = torch.sqrt(torch.sigmoid(-lam))[:, None]
    expected = 0.5 * z - torch.tensor([[1.0], [3.0]], dtype=torch.float64) * sigma * _hand_grad(z, W, labels)
    torch.testing.assert_close(guided, expected)


def test_w0_never_evaluates_the_classifier():
    def classifier(z, lam):
        raise AssertionError("w = 0 is the base model without guidance: the classifier must not run")

    z = torch.randn(2, DIM, dtype=torch.float64)
    lam = torch.zeros(2, dtype=torch.float64)
    out = guidance.classifier_eps_fn(lambda z, lam: 2 * z, classifier, torch.tensor([0, 1]), 0.0)(z, lam)
    torch.testing.assert_close(out, 2 * z)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_logits_give_the_gradient_within_their_rounding(half):
    classifier, W = _linear_classifier(torch.float32, logits_dtype=half)
    z = torch.tensor([[0.3, -0.2, 0.5, 0.1]], dtype=torch.float32)
    labels = torch.tensor([1])
    grad = guidance.classifier_grad(classifier, z, torch.zeros(1), labels)
    assert grad.dtype == torch.float32
    torch.testing.assert_close(grad, _hand_grad(z, W, labels), atol=2e-2, rtol=0)


def test_classifier_guided_eps_refuses_a_gradient_of_another_shape():
    eps = torch.zeros(2, 1, 3, 3)
    for grad in (torch.zeros(1, 1, 3, 3), torch.zeros(2, 1, 3, 1)):  # both would broadcast silently
        with pytest.raises(ValueError, match="shapes must match"):
            guidance.classifier_guided_eps(eps, grad, 1.0, 1.0)
        with pytest.raises(ValueError, match="shapes must match"):
            guidance.classifier_guided_eps(grad, eps, 1.0, 1.0)


def test_classifier_eps_fn_errors_name_the_shapes():
    classifier, _ = _linear_classifier()
    base = lambda z, lam: z
    with pytest.raises(ValueError, match=re.escape("labels must have shape (B,), got (2, 1)")):
        guidance.classifier_eps_fn(base, classifier, torch.zeros(2, 1, dtype=torch.long), 1.0)
    eps_fn = guidance.classifier_eps_fn(base, classifier, torch.tensor([0, 1]), 1.0)
    with pytest.raises(ValueError, match="batch of 3 noisy inputs for 2 labels"):
        eps_fn(torch.zeros(3, DIM, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))


def test_a_guidance_name_can_be_registered_once():
    with pytest.raises(ValueError, match="a guidance method named 'cfg' is already registered"):
        guidance.register_guidance("cfg")(lambda model, labels, w: None)


def test_hand_gradient_is_the_log_softmax_gradient():
    # the reference above, checked once against a finite difference of log p(c | z)
    _, W = _linear_classifier()
    z = torch.tensor([[0.4, -1.0, 2.0, 0.3]], dtype=torch.float64)
    log_p = lambda zz: torch.log_softmax(zz @ W, 1)[0, 2].item()
    h = 1e-6
    fd = [(log_p(z + h * e) - log_p(z - h * e)) / (2 * h) for e in torch.eye(DIM, dtype=torch.float64)[:, None]]
    assert _hand_grad(z, W, torch.tensor([2]))[0].tolist() == pytest.approx(fd, rel=1e-6)
    assert math.isfinite(fd[0])


def test_rescale_leaves_a_guided_eps_without_spread_as_it_is():
    # std(eps_cfg) = 0: there is no spread to rescale, so the guided eps comes back unchanged (ratio taken as 1)
    z = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=torch.float64)
    eps_cond = torch.tensor([[1.0, -2.0, 0.3, 0.7]], dtype=torch.float64)
    eps_guided = torch.full_like(z, 0.25)
    out = guidance_variants.rescale_eps(z, torch.tensor([1.0]), eps_cond, eps_guided, phi=0.7, space="eps")
    torch.testing.assert_close(out, eps_guided)


def test_cfg_refuses_predictions_of_different_shapes():
    eps = torch.zeros(2, 1, 3, 3)
    for other in (torch.zeros(1, 1, 3, 3), torch.zeros(2, 1, 1, 3)):  # both would broadcast silently
        with pytest.raises(ValueError, match="shapes must match"):
            guidance.cfg(eps, other, 1.0)
        with pytest.raises(ValueError, match="shapes must match"):
            guidance.cfg(other, eps, 1.0)


def test_a_model_whose_config_has_no_class_count_is_asked_for_num_classes():
    class Model(torch.nn.Module):
        config = object()  # a config without num_classes

        def forward(self, z, lam, labels):
            return z

    message = "^cannot tell the number of classes of this model: pass num_classes$"
    with pytest.raises(ValueError, match=message):
        guidance.cfg_eps_fn(Model(), torch.tensor([0, 1]), 1.0)
    with pytest.raises(ValueError, match=message):  # a bare eps-callable has neither config nor num_classes
        guidance.cfg_eps_fn(lambda z, lam, labels: z, torch.tensor([0, 1]), 1.0)
    # given explicitly, the null label is that index
    seen = []
    model = Model()
    model.forward = lambda z, lam, labels: seen.append(labels) or z
    guidance.cfg_eps_fn(model, torch.tensor([0, 1]), -1.0, num_classes=5)(torch.zeros(2, 3), torch.zeros(2))
    assert seen[0].tolist() == [5, 5]


def test_per_sample_w_keeps_the_predictions_dtype_and_must_be_one_per_sample():
    eps_c = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 1.0]])
    eps_u = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    w = torch.tensor([0.5, 2.0], dtype=torch.float64)
    out = guidance.cfg(eps_c, eps_u, w)
    assert out.dtype == torch.float32
    # (1 + w) eps_c - w eps_u, row by row
    torch.testing.assert_close(out, torch.tensor([[1.5, 2.5, 0.0], [7.0, 10.0, 1.0]]))
    for bad, shape in ((torch.tensor([[0.5], [2.0]]), "(2, 1)"), (torch.tensor([0.5, 2.0, 1.0]), "(3,)")):
        with pytest.raises(ValueError, match=re.escape(f"per-sample w must have shape (2,), got {shape}")):
            guidance.cfg(eps_c, eps_u, bad)
