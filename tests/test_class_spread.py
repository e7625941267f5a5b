"""metrics.class_spread: tr C split into within-class and between-class parts (the law of total variance)."""

import numpy as np
import pytest
import torch

from minicfg.metrics import class_spread


def test_two_hand_made_clusters():
    # class 0 at x = 0 and 2 (mean 1), class 1 at x = 10 and 12 (mean 11), y = 0; overall mean 6, N - 1 = 3.
    # within: each point is 1 from its class mean, 4 * 1 = 4; between: 2 * 5^2 + 2 * 5^2 = 100
    f = [[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]]
    out = class_spread(f, [0, 0, 1, 1])
    assert out["within"] == pytest.approx(4 / 3, rel=1e-12)
    assert out["between"] == pytest.approx(100 / 3, rel=1e-12)
    assert out["total"] == pytest.approx(104 / 3, rel=1e-12)
    assert out["classes"] == [0, 1]


def test_total_is_the_trace_of_the_covariance_and_the_parts_behave():
    g = torch.Generator().manual_seed(0)
    centres = 5 * torch.randn(4, 6, generator=g)
    y = torch.arange(300) % 4
    f = centres[y] + torch.randn(300, 6, generator=g) * torch.tensor([0.5, 1.0, 2.0, 0.5, 1.0, 3.0])
    out = class_spread(f, y)
    cov_trace = float(np.trace(np.cov(f.double().numpy(), rowvar=False)))
    assert out["total"] == pytest.approx(cov_trace, rel=1e-10)
    assert out["within"] + out["between"] == pytest.approx(cov_trace, rel=1e-10)
    # the within part is the sum of squared per-dimension noise stds, up to sampling error
    assert out["within"] == pytest.approx(0.25 + 1 + 4 + 0.25 + 1 + 9, rel=0.15)
    # one label for all: no between part; every point its own class: no within part
    assert class_spread(f, torch.zeros(300))["between"] == pytest.approx(0.0, abs=1e-9)
    assert class_spread(f, torch.arange(300))["within"] == 0.0


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="one label per feature row"):
        class_spread(np.zeros((5, 3)), [0, 1])
    with pytest.raises(ValueError, match=r"\(N >= 2, d\)"):
        class_spread(np.zeros(5), [0] * 5)
