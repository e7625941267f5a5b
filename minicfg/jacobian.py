"""Is a vector field a gradient? The share of its Jacobian that is antisymmetric, from random probes.

A field ``g(z) = grad f(z)`` has the Hessian of ``f`` as its Jacobian ``J``, which is symmetric: ``u^T J v = v^T J u``
for all directions ``u, v``. Split ``J = S + A`` into its symmetric part ``S = (J + J^T) / 2`` and its antisymmetric
part ``A = (J - J^T) / 2``; :func:`jacobian_asymmetry` estimates ``||A||_F / ||J||_F``, which is 0 for a gradient
field (up to round-off), 1 for a pure rotation ``g(z) = A z`` and about ``1 / sqrt(2)`` for a matrix with
independent random entries. For Gaussian probes ``u, v``, ``E[(u^T J v - v^T J u)^2] = 4 ||A||_F^2`` and
``E[(u^T J v + v^T J u)^2] = 4 ||S||_F^2``, and ``||J||_F^2 = ||A||_F^2 + ||S||_F^2``, so two vector-Jacobian
products per probe pair suffice (no full Jacobian, no forward-mode autograd). Notebook 05 applies it to
``eps(z, c) - eps(z)``, the direction classifier-free guidance adds, which for exact scores is
``-sigma grad_z log p(c | z)``, a gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["jacobian_asymmetry"]


def jacobian_asymmetry(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, n_probes: int = 8,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``||A||_F / ||J||_F`` per sample: the antisymmetric share of the Jacobian of ``fn`` at ``z``, shape (B,).

    ``fn`` maps a batch ``z`` of shape (B, ...) to a tensor of the same shape, each row depending on its own row
    of ``z`` only (a network without batch statistics, an eps-callable with its labels and lam fixed). Each sample's
    Jacobian is estimated from ``n_probes`` pairs of Gaussian probe directions drawn from ``generator``; the
    estimate's relative noise falls like ``1 / sqrt(n_probes)``.
    """
    if not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be a positive int (the number of probe pairs), got {n_probes!r}")
    if z.ndim < 2:
        raise ValueError(f"z must have shape (B, ...) with a batch dimension first, got {tuple(z.shape)}")
    with torch.enable_grad():
        zg = z.detach().clone().requires_grad_(True)
        out = fn(zg)
        if not torch.is_tensor(out) or out.shape != z.shape:
            raise ValueError(f"fn must map z of shape {tuple(z.shape)} to a tensor of the same shape (a vector field), "
                             f"got {getattr(out, 'shape', type(out))}")
        if not out.requires_grad:
            raise ValueError("fn's output does not depend on z through autograd: call it outside "
                             "torch.inference_mode() and without detaching z")
        dims = tuple(range(1, z.ndim))
        anti = torch.zeros(z.shape[0], dtype=out.dtype, device=out.device)
        sym = torch.zeros_like(anti)
        for _ in range(n_probes):
            u = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
            v = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
            jtu, = torch.autograd.grad(out, zg, u, retain_graph=True)   # J^T u, per row
            jtv, = torch.autograd.grad(out, zg, v, retain_graph=True)
            u_j_v = (jtu * v).sum(dims)                                 # u^T J v
            v_j_u = (jtv * u).sum(dims)                                 # v^T J u
            anti += (u_j_v - v_j_u).pow(2)
            sym += (u_j_v + v_j_u).pow(2)
    total = anti + sym
    if bool((total == 0).any()):
        raise ValueError("the Jacobian of fn is zero at some row of z, so its asymmetry is undefined")
    return (anti / total).sqrt().detach()
