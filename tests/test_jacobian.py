"""jacobian_asymmetry against fields whose Jacobian is known by hand: gradients, rotations, linear maps."""
import pytest
import torch

from minicfg import toy
from minicfg.jacobian import jacobian_asymmetry


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_a_gradient_field_is_symmetric_to_round_off():
    # g = grad of f(z) = sum log cosh(z W): J = W diag(1 - tanh^2) W^T, symmetric whatever W is
    w = torch.randn(6, 9, generator=_gen(1), dtype=torch.float64)
    z = torch.randn(5, 6, generator=_gen(2), dtype=torch.float64)
    out = jacobian_asymmetry(lambda x: torch.tanh(x @ w) @ w.T, z, n_probes=4, generator=_gen(3))
    assert out.shape == (5,)
    assert (out < 1e-12).all()


def test_a_rotation_field_is_all_antisymmetric():
    m = torch.randn(4, 4, generator=_gen(1), dtype=torch.float64)
    a = m - m.T                                      # antisymmetric: g(z) = A z turns z, it is nobody's gradient
    z = torch.randn(3, 4, generator=_gen(2), dtype=torch.float64)
    out = jacobian_asymmetry(lambda x: x @ a.T, z, n_probes=4, generator=_gen(3))
    torch.testing.assert_close(out, torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_a_linear_field_gives_the_share_of_its_matrix_antisymmetric_part():
    # g(z) = M z with M = S + c A: the share ||A_part||_F / ||M||_F written out from the matrix itself
    m = torch.randn(8, 8, generator=_gen(4), dtype=torch.float64)
    mat = (m + m.T) / 2 + 0.6 * (m - m.T) / 2
    anti, full = torch.linalg.matrix_norm((mat - mat.T) / 2), torch.linalg.matrix_norm(mat)
    z = torch.randn(3, 8, generator=_gen(5), dtype=torch.float64)
    out = jacobian_asymmetry(lambda x: x @ mat.T, z, n_probes=4000, generator=_gen(7))
    assert 0.3 < float(anti / full) < 0.6                 # neither end: the test can tell a share from 0 or 1
    torch.testing.assert_close(out, (anti / full).expand(3), atol=0.03, rtol=0)  # probe noise ~ 1/sqrt(4000)


def test_each_row_gets_its_own_jacobian():
    m = torch.randn(3, 3, generator=_gen(1), dtype=torch.float64)
    a, s = m - m.T, m + m.T
    rotate = torch.tensor([True, False, True, False])

    def field(x):  # rows 0 and 2 rotate, rows 1 and 3 are the gradient of z^T S z / 2
        return torch.where(rotate[:, None], x @ a.T, x @ s.T)

    z = torch.randn(4, 3, generator=_gen(2), dtype=torch.float64)
    out = jacobian_asymmetry(field, z, n_probes=3, generator=_gen(3))
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_the_toy_guidance_direction_is_a_gradient():
    # with exact scores eps(z, c) - eps(z) = -sigma grad log p(c | z): symmetric Jacobian
    mix = toy.three_gaussians()
    z = torch.randn(64, 2, generator=_gen(8), dtype=torch.float64)
    labels = torch.randint(0, 3, (64,), generator=_gen(9))
    lam = torch.full((64,), -1.0, dtype=torch.float64)
    out = jacobian_asymmetry(lambda x: mix(x, lam, labels) - mix(x, lam, torch.full_like(labels, 3)), z,
                             generator=_gen(10))
    assert (out < 1e-10).all()


def test_bad_input_names_the_fix():
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match="same shape"):
        jacobian_asymmetry(lambda x: x.sum(1), z)
    with pytest.raises(ValueError, match="n_probes"):
        jacobian_asymmetry(lambda x: x, z, n_probes=0)
    with pytest.raises(ValueError, match="inference_mode"):
        jacobian_asymmetry(lambda x: x.detach() * 2, z)
    with pytest.raises(ValueError, match="batch dimension"):
        jacobian_asymmetry(lambda x: x, torch.randn(3))
