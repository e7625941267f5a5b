"""What a guided eps-callable may return to a sampler: an eps, or a :class:`Guided` pair.

The contract between guidance and samplers (docs/architecture.md): ``eps_fn(z, lam)`` returns

- an eps tensor of ``z``'s shape (Eq. 6 and every method that changes only the eps): the sampler predicts
  ``x~ = (z - sigma eps) / alpha`` from it and moves ``z`` with it; or
- ``Guided(eps, renoise)``, for a method that needs one prediction for denoising and another for renoising
  (CFG++'s shape): ``eps`` gives the x-prediction ``x~``, and the sampler's step sees the state with its noise
  swapped for ``renoise``, ``z + sigma (renoise - eps) = alpha x~ + sigma renoise``, and the eps ``renoise``. So
  DDIM moves to ``alpha' x~ + sigma' renoise`` and the ancestral sampler to the posterior around that state.
  ``Guided(eps, eps)`` is the plain ``eps`` bit for bit. With ``clip_x`` the clip moves ``x~`` and the step's eps
  is re-derived from that state, as for a plain eps.

Any other return (a plain tuple, an array) is a ValueError: a sampler tells the two apart by type, never by name.

An eps-callable may also have a method ``begin(lams)``: the shared sampler loop calls it once per run, before the
first evaluation, with the whole grid (increasing log-SNRs, in ``z``'s device and dtype), so a method can reset
per-run state (a momentum) or read the grid (which steps are first). The state lives in the callable that
``guidance.build_guidance`` returns, which ``generate`` builds afresh for every batch. Samplers of more than one
evaluation per step (``samplers.heun``) call ``eps_fn`` between the grid's lams too. Bottom layer: imports
nothing of minicfg.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["Guided"]


class Guided(NamedTuple):
    """A guidance method's two predictions at one ``(z, lam)``: ``eps`` for the x-prediction (denoising) and
    ``renoise`` for the move to the next lam (renoising); both of ``z``'s shape."""

    eps: torch.Tensor
    renoise: torch.Tensor
