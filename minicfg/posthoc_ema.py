"""Post-hoc EMA (Karras et al. 2024, EDM2, Sec. 3.2): choose the EMA length after training, by measurement.

A training run with ``TrainConfig.snapshot_every`` keeps, besides its usual EMA, two power-function EMAs
(``profiles``, EDM2's Eq. 3 with exponents for ``sigma_rel`` 0.05 and 0.10) and writes all three to
``OUT/snapshots/step_NNNNNN.safetensors`` every so many steps. A power EMA of exponent ``gamma`` stopped at step
``t`` averages the training weights with density ``(gamma + 1) tau^gamma / t^(gamma + 1)`` on ``[0, t]``; its
width relative to the run is ``sigma_rel`` (:func:`sigma_rel`, derived in ``derivations.posthoc_ema``). A
weighted sum of the stored snapshots is again an average of the training weights; :func:`fit` finds
the sum whose density is closest (least squares over ``tau``) to that of any wanted ``sigma_rel`` at any stored
step, and :func:`synthesize` writes it as an ordinary weights file, so one run gives every EMA length.

The snapshot files are also loadable by :func:`minicfg.checkpoint.load_model` (their ``ema.`` tensors are the
run's usual EMA), which is what the time-to-quality curve (``bench/time_to_quality.py --curve``) measures.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_model, load_tensors, save_weights

__all__ = ["PROFILE_SIGMA_RELS", "sigma_rel", "gamma_for", "ema_width", "overlap", "fit",
           "snapshots", "snapshot_steps", "synthesize"]

#: The two stored profiles (EDM2 stores sigma_rel 0.05 and 0.10): every length between and around them can be
#: reconstructed from the pair.
PROFILE_SIGMA_RELS = (0.05, 0.10)
#: sigma_rel of the uniform average (gamma = 0), the widest power EMA that does not favour early weights.
SIGMA_REL_MAX = math.sqrt(1 / 12)
_STEP = re.compile(r"step_(\d+)\.safetensors$")


def sigma_rel(gamma: float) -> float:
    """Width of a power EMA relative to the run's length: ``sqrt((g + 1) / ((g + 2)^2 (g + 3)))``."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def gamma_for(width: float) -> float:
    """The exponent ``gamma >= 0`` of the power EMA with relative width ``width`` (:func:`sigma_rel` inverted).

    ``sigma_rel`` falls monotonically from sqrt(1/12) = 0.289 at ``gamma = 0`` towards 0, so the root is found
    by bisection; a width outside ``(0, 0.289]`` is refused."""
    if not 0.0 < width <= SIGMA_REL_MAX:
        raise ValueError(f"sigma_rel must lie in (0, {SIGMA_REL_MAX:.4f}] (0.289 is the plain average of the whole "
                         f"run), got {width}")
    lo, hi = 0.0, 1.0
    while sigma_rel(hi) > width:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sigma_rel(mid) > width else (lo, mid)
    return 0.5 * (lo + hi)


def overlap(g1: float, t1: float, g2: float, t2: float) -> float:
    """``integral p_1(tau) p_2(tau) dtau`` of two power-EMA densities (exponent, stop step), computed in logs
    (``t^gamma`` overflows for long narrow EMAs); the closed form is derived in ``derivations.posthoc_ema``."""
    m = min(t1, t2)
    log = (math.log(g1 + 1) + math.log(g2 + 1) + (g1 + g2 + 1) * math.log(m) - math.log(g1 + g2 + 1)
           - (g1 + 1) * math.log(t1) - (g2 + 1) * math.log(t2))
    return math.exp(log)


def fit(profiles: list[tuple[float, float]], gamma: float, t: float) -> tuple[np.ndarray, float]:
    """Coefficients ``x`` for the stored profiles ``[(gamma_i, t_i), ...]`` whose sum ``sum_i x_i p_i`` is the
    least-squares fit (over ``tau``) to the density ``p`` of a power EMA of exponent ``gamma`` stopped at ``t``, and
    the fit's relative L2 error ``||sum_i x_i p_i - p|| / ||p||``."""
    if not profiles:
        raise ValueError("no snapshots to mix: train with snapshot_every > 0 (`minicfg train --snapshot-every N`)")
    if t > max(s for _, s in profiles):
        raise ValueError(f"step {t:g} lies past the last snapshot (step {max(s for _, s in profiles):g}); "
                         f"an EMA can only be rebuilt up to a stored step")
    a = np.array([[overlap(gi, ti, gj, tj) for gj, tj in profiles] for gi, ti in profiles])
    b = np.array([overlap(gi, ti, gamma, t) for gi, ti in profiles])
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    target = overlap(gamma, t, gamma, t)
    return x, math.sqrt(max(0.0, float(x @ a @ x - 2 * x @ b + target)) / target)


def ema_width(decay: float, steps: int, fraction: float | None = None) -> float:
    """sigma_rel of the Trainer's EMA (``TrainConfig.ema_decay`` and ``ema_fraction``) after ``steps`` updates: the
    standard deviation of the weights it gives the models of steps 1..steps, over ``steps``. The usual EMA (decay
    (1 + n)/(10 + n) capped at 0.999) gives model t the weight C(t + 8, 8), a power EMA of exponent 8 until the cap,
    so its width is sigma_rel(8) = 0.0905 in any run shorter than about 9,000 steps."""
    n = np.arange(steps, dtype=np.float64)  # models averaged before update n + 1
    d = (1 - 1 / (n + 1)) ** (1 / fraction) if fraction else np.minimum(decay, (1 + n) / (10 + n))
    d[0] = 0.0  # the first update copies the model
    # weight of model t: (1 - d_t) * prod_{s > t} d_s
    tail = np.concatenate([np.cumprod(d[::-1])[::-1][1:], [1.0]])
    weights = (1 - d) * tail
    t = n + 1
    mean = (weights * t).sum() / weights.sum()
    return math.sqrt((weights * (t - mean) ** 2).sum() / weights.sum()) / steps


def snapshots(folder) -> list[tuple[int, Path]]:
    """(step, file) of each snapshot of a training folder (or of its ``snapshots`` sub-folder), in step order."""
    folder = Path(folder)
    if (folder / "snapshots").is_dir():
        folder = folder / "snapshots"
    found = sorted((int(m.group(1)), p) for p in folder.glob("step_*.safetensors") if (m := _STEP.search(p.name)))
    if not found:
        raise CheckpointError(f"no snapshots (step_NNNNNN.safetensors) in {folder}: train with "
                              f"`minicfg train --snapshot-every N` to keep them")
    return found


def snapshot_steps(folder) -> list[int]:
    """The steps at which the run in ``folder`` wrote a snapshot."""
    return [step for step, _ in snapshots(folder)]


def synthesize(folder, width: float, step: int | None = None, out=None) -> tuple[torch.nn.Module, dict]:
    """The EMA of relative width ``width`` at ``step`` (default: the last snapshot), rebuilt from the
    snapshots in ``folder`` (only those up to ``step``); written to ``out`` as a weights file when given.

    Returns (network, metadata); the metadata gains ``posthoc_ema`` (the width, exponent, step, the snapshots'
    coefficients and the fit's relative L2 error)."""
    gamma = gamma_for(width)  # a bad width is refused before the files are read
    stored = snapshots(folder)
    steps = [s for s, _ in stored]
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise ValueError(f"no snapshot at step {step}; the run kept steps {steps}")
    parts, coords = [], []  # (file, tensors, prefix) and (gamma_i, t_i) of every stored profile up to step
    meta = None
    for s, path in stored:
        if s > step:
            break
        tensors, meta = load_tensors(path)
        for i, profile in enumerate(meta.get("profiles", [])):
            parts.append((path, tensors, f"profile{i}."))
            coords.append((float(profile["gamma"]), float(s)))
    if not parts:
        raise CheckpointError(f"the snapshots in {stored[0][1].parent} hold no EMA profiles to mix")
    x, error = fit(coords, gamma, step)
    model, _ = load_model(stored[steps.index(step)][1])
    state = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in model.state_dict().items()
             if v.is_floating_point()}
    for (_, tensors, prefix), coef in zip(parts, x, strict=True):
        for k in state:
            state[k] += float(coef) * tensors[prefix + k].double()
    reference = model.state_dict()
    model.load_state_dict({k: state[k].to(v.dtype) if k in state else v for k, v in reference.items()})
    meta = {k: v for k, v in meta.items() if k not in ("profiles", "model")}
    meta["step"] = step
    meta["posthoc_ema"] = {"sigma_rel": width, "gamma": gamma, "step": step, "fit_error": round(error, 6),
                           "coefficients": [[str(p.name), pre.rstrip("."), round(float(c), 6)]
                                            for (p, _, pre), c in zip(parts, x, strict=True)]}
    if out is not None:
        save_weights(out, model, meta)
    return model, meta
