"""The checks of notebooks 06-09 (minicfg.checks) against independent statements: closed forms, small cases worked
out by hand, other correct ways of writing each exercise, and the library functions the statements name.
(tests/test_checks.py runs every exercise's solution, stub and typical mistake.)"""

import math

import numpy as np
import pytest
import torch

from minicfg import checks, guidance, samplers, schedules, zero_shot


def _eig_fid(mu1, cov1, mu2, cov2):
    """FID written another way: tr((C1 C2)^1/2) from the eigenvalues of C1 C2 (numpy, no eigh, no clamp)."""
    m1, c1, m2, c2 = (t.double().numpy() for t in (mu1, cov1, mu2, cov2))
    cross = np.sqrt(np.abs(np.linalg.eigvals(c1 @ c2).real)).sum()
    return torch.tensor(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross, dtype=mu1.dtype)


def _brute_precision_recall(real, fake, k):
    """Improved precision and recall by the definition, with Python loops over the points."""

    def radius(points, i):
        return sorted(float((points[i] - points[j]).norm()) for j in range(len(points)) if j != i)[k - 1]

    def covered(query, points):
        radii = [radius(points, i) for i in range(len(points))]
        inside = [any(float((q - p).norm()) <= r for p, r in zip(points, radii, strict=True)) for q in query]
        return sum(inside) / len(query)

    return torch.tensor(covered(fake, real), dtype=real.dtype), torch.tensor(covered(real, fake), dtype=real.dtype)


def test_w_solved_from_diffusers_formula_passes_the_guidance_scale_check():
    """diffusers guides with eps_u + s (eps_c - eps_u); with eps_c = 1 and eps_u = 0 that is s, and Eq. 6 gives
    (1 + w) * 1 - w * 0 = 1 + w: the w that makes the two agree, solved from the formulas, must pass."""

    def guidance_scale_to_w(guidance_scale):
        eps_c, eps_u = torch.ones_like(guidance_scale), torch.zeros_like(guidance_scale)
        diffusers = eps_u + guidance_scale * (eps_c - eps_u)
        return (diffusers - eps_c) / (eps_c - eps_u)  # from (1 + w) eps_c - w eps_u = diffusers

    checks.check_guidance_scale_to_w(guidance_scale_to_w)
    assert guidance.w_from_guidance_scale(7.5) == 6.5


def test_the_ddim_reference_is_the_step_samplers_ddim_takes():
    torch.manual_seed(0)
    z0 = torch.randn(3, 2, dtype=torch.float64)
    lams = torch.tensor([-4.0, -1.0, 2.0, 5.0], dtype=torch.float64)
    eps_fn = lambda z, lam: 0.3 * z + 0.1 * lam[:, None]
    seen = []
    samplers.ddim(eps_fn, z0, lams, callback=lambda i, lam, z, x: seen.append(z.clone()))
    for i in range(2):
        lam, lam_next = lams[i].expand(3), lams[i + 1].expand(3)
        torch.testing.assert_close(checks._ddim_step(seen[i], eps_fn(seen[i], lam), lam, lam_next), seen[i + 1],
                                   rtol=1e-12, atol=1e-12)


def test_guided_ddim_on_two_point_masses_returns_eq6_of_the_two_points_at_the_last_evaluated_lam():
    """Exact eps of point masses at a (conditional) and b (unconditional) make every x~ equal (1 + w) a - w b, with w
    the strength at the lam of that evaluation: the last one is at lams[-2]."""
    a, b = torch.tensor([[0.5, -1.0]], dtype=torch.float64), torch.tensor([[-0.25, 2.0]], dtype=torch.float64)

    def point_mass(x):
        return lambda z, lam: (z - schedules.alpha_sigma(lam)[0][:, None] * x) / schedules.alpha_sigma(lam)[1][:, None]

    lams = schedules.sampling_lams(6, dtype=torch.float64)
    for w_fn in (checks.w_constant, checks.w_in_an_interval, checks.w_growing_with_lam):
        w_last = float(w_fn(lams[-2:-1]))
        z = torch.randn(1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        x = checks._guided_ddim(point_mass(a), point_mass(b), z, lams, w_fn)
        torch.testing.assert_close(x, (1 + w_last) * a - w_last * b, rtol=1e-9, atol=1e-9)
    # the test tells lams[-2] from lams[-1]: w is 3 at lams[-2] = 2.6 and 0 at lams[-1] = 20
    assert float(checks.w_in_an_interval(lams[-2:-1])) == 3.0 and float(checks.w_in_an_interval(lams[-1:])) == 0.0


def test_guided_ddim_written_in_the_other_form_of_the_step_passes(capsys):
    """DDIM's step rearranged, z' = (alpha' / alpha) z + (sigma' - alpha' sigma / alpha) eps~, with x~ computed only
    for the return value: the same sampler, other round-off."""

    def guided_ddim(eps_cond, eps_uncond, z, lams, w_of_lam):
        steps = []
        for lam_now, lam_next in zip(lams[:-1], lams[1:], strict=True):
            lam = lam_now.expand(len(z))
            w = w_of_lam(lam).reshape(-1, *[1] * (z.ndim - 1))
            eps = eps_cond(z, lam) + w * (eps_cond(z, lam) - eps_uncond(z, lam))
            (a, s), (a_n, s_n) = (schedules.alpha_sigma(t) for t in (lam_now, lam_next))
            steps.append((z - s * eps) / a)
            z = (a_n / a) * z + (s_n - a_n * s / a) * eps
        return steps[-1]

    checks.check_guided_ddim(guided_ddim)
    assert capsys.readouterr().out == "guided_ddim: all 4 inputs pass\n"


def test_fid_reference_in_one_dimension_and_for_diagonal_covariances():
    """In 1-D, FID = (m1 - m2)^2 + (s1 - s2)^2; with diagonal covariances it is that summed over the coordinates."""
    one = [torch.tensor(v, dtype=torch.float64) for v in ([0.5], [[4.0]], [-1.0], [[1.0]])]
    assert float(checks._fid(*one)) == pytest.approx(1.5**2 + (2 - 1) ** 2, rel=1e-12)
    va, vb = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64), torch.tensor([3.0, 0.25, 0.5], dtype=torch.float64)
    mu_a, mu_b = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    expected = 3 + float(((va.sqrt() - vb.sqrt()) ** 2).sum())
    assert float(checks._fid(mu_a, torch.diag(va), mu_b, torch.diag(vb))) == pytest.approx(expected, rel=1e-12)


def test_fid_written_with_the_eigenvalues_of_c1_c2_passes():
    checks.check_fid_from_stats(_eig_fid)


@pytest.mark.parametrize(("cross", "fails_at"), [
    (lambda c1, c2: torch.sqrt(c1 @ c2).trace(), "the same Gaussian twice (distance 0)"),
    (lambda c1, c2: torch.sqrt(c1 * c2).trace(), "full covariances, d = 5"),  # right for diagonal covariances
])
def test_fid_with_an_entrywise_square_root_passes_one_dimension_and_gets_the_matrix_root_hint(cross, fails_at):
    def fid(mu1, cov1, mu2, cov2):
        return (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross(cov1, cov2)

    with pytest.raises(AssertionError) as info:
        checks.check_fid_from_stats(fid)
    message = str(info.value)
    assert f"wrong result on the input '{fails_at}'" in message
    assert "known mistake: (C1 C2)^1/2 is a matrix square root" in message


def test_precision_recall_reference_on_a_case_worked_by_hand():
    """Reals 0, 1, 2, 3 (k = 1: radius 1 each); fakes 0.5, 10, 2.9 (radii 2.4, 7.1, 2.4). Fakes 0.5 and 2.9 lie in a
    real ball, 10 does not: precision 2/3. Every real lies within 2.4 of 0.5 or 2.9: recall 1."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    fake = torch.tensor([[0.5], [10.0], [2.9]], dtype=torch.float64)
    precision, recall = checks._precision_recall(real, fake, 1)
    assert (float(precision), float(recall)) == pytest.approx((2 / 3, 1.0))


def test_precision_recall_by_the_definition_passes():
    checks.check_precision_recall_knn(_brute_precision_recall)


def test_interval_cfg_written_sample_by_sample_passes():
    def interval_cfg(eps_cond, eps_uncond, lam, w, lam_low, lam_high):
        rows = [(1 + w) * c - w * u if lam_low <= float(lv) <= lam_high else c
                for c, u, lv in zip(eps_cond, eps_uncond, lam, strict=True)]
        return torch.stack(rows)

    checks.check_interval_cfg(interval_cfg)


def test_the_zero_shot_reference_picks_the_labels_classify_picks():
    """zero_shot.classify on a stand-in model and the check's rule on its per-draw errors agree."""
    images = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1

    def model(z, lam, labels):
        return 0.5 * z + 0.2 * (labels.to(z.dtype) - 1).reshape(-1, 1, 1, 1) * z.mean((1, 2, 3), keepdim=True)

    labels, _ = zero_shot.classify(model, images, n_noise=5, num_classes=3)
    per_draw, _ = zero_shot.class_errors_per_draw(model, images, n_noise=5, num_classes=3)
    assert torch.equal(per_draw.mean(2).argmin(1), labels)
    assert len(set(labels.tolist())) > 1  # the stand-in tells the images apart


def test_per_class_recognition_reference_is_notebook_08s_sorted_form():
    """For labels sorted by class, n per class (as notebook 08 draws them), the rate is hits.view(C, n).mean(1)."""
    g = torch.Generator().manual_seed(4)
    labels = torch.arange(5).repeat_interleave(7)
    predicted = torch.where(torch.rand(35, generator=g) < 0.4, torch.randint(0, 5, (35,), generator=g), labels)
    expected = (predicted == labels).float().view(5, 7).mean(1)
    torch.testing.assert_close(checks._per_class(predicted, labels, 5), expected)
    shuffle = torch.randperm(35, generator=g)  # the order of the samples does not matter
    torch.testing.assert_close(checks._per_class(predicted[shuffle], labels[shuffle], 5), expected)


@pytest.mark.parametrize("name", ["guidance_scale_to_w", "ddim_step", "guided_ddim", "fid_from_stats",
                                  "precision_recall_knn", "per_class_recognition", "interval_cfg",
                                  "zero_shot_predict"])
def test_a_result_of_the_wrong_type_is_named(name):
    """A Python number (or None) where a tensor was expected says so instead of crashing in the comparison."""
    with pytest.raises(AssertionError, match=r"returned (float|NoneType|tuple)|expected a tuple"):
        checks.EXERCISES[name](lambda *args: math.nan)
