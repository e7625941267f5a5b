"""Guidance distillation, stage one (Meng et al. 2023): a student that takes w and guides in one pass per step.

Meng, Rombach, Gao, Kingma, Ermon, Ho and Salimans 2023, "On distillation of guided diffusion models", Sec. 3.1,
Eq. 6: a student network ``eps_s(z, lam, c, w)`` is trained to match the teacher's guided prediction
``eps~ = (1 + w) eps_t(z, lam, c) - w eps_t(z, lam)`` (paper Eq. 6 of Ho & Salimans 2022) at a w drawn uniformly from
``[w_min, w_max]``, on noised training images at the teacher's training log-SNRs. Sampling with the student then costs
one network pass per sampler evaluation where CFG costs two. (Stage two, which halves the steps, is not built.)

The student is the teacher's U-Net with a guidance input (``nets.UNetConfig.guidance_range``), initialised from the
teacher's weights; its w-MLP's last layer starts at zero, so the untrained student is the teacher's conditional
prediction. The loss is the squared error in the network's own output space (v for the shipped model): the output is
an affine function of eps with coefficients that depend on (z, lam) only, so the guided combination of the
teacher's two raw outputs with weights ``1 + w`` and ``-w`` (which sum to one) is exactly the raw output whose eps is
eps~, and no division by a small alpha or sigma enters the target.

Train one with ``minicfg train --objective distill --preset distill --out runs/student`` (the teacher is the
shipped model of the data set unless ``--teacher PATH`` names another); sample with
``minicfg sample --guidance distilled --student runs/student`` (the shipped student when left out).
"""

from __future__ import annotations

import torch

from ._checks import check_labels, check_w_spec
from .diffusion import q_sample
from .guidance_formulas import _num_classes, _w_at
from .predictions import sample_lams

__all__ = ["DEFAULT_W_RANGE", "load_teacher", "student_config", "init_student", "guided_raw", "distill_loss",
           "distilled"]

#: the range of w the shipped student is distilled for (the project's sweeps guide MNIST at w <= 4)
DEFAULT_W_RANGE = (0.0, 4.0)
_TEACHERS: dict = {}


def load_teacher(path, dataset: str, device) -> torch.nn.Module:
    """The teacher (a diffusion model, role ``model``; the shipped one when ``path`` is None), loaded once per
    process and device, frozen."""
    from .checkpoint import load_model

    key = (str(path), dataset, str(device))
    if key not in _TEACHERS:
        teacher, _ = load_model(path, dataset=dataset, role="model", device=device)
        if teacher.config.guidance_range is not None:
            raise ValueError(f"the teacher {path} is itself a distilled student; distil from a diffusion model "
                             f"trained with label dropout (p_uncond > 0)")
        _TEACHERS[key] = teacher.requires_grad_(False).eval()
    return _TEACHERS[key]


def student_config(teacher_config: dict, given: dict, w_range) -> dict:
    """The student's architecture: the teacher's, with ``guidance_range``. Architecture settings ``given`` for the
    run must agree with the teacher's (the student starts from the teacher's weights)."""
    differ = {k: (v, teacher_config.get(k)) for k, v in given.items()
              if k != "guidance_range" and k in teacher_config and _norm(v) != _norm(teacher_config[k])}
    if differ:
        raise ValueError(f"a distilled student has its teacher's architecture, but this run asks for {differ} "
                         f"(run, teacher); drop those model settings or pick a teacher of that architecture")
    return {**teacher_config, "guidance_range": tuple(float(v) for v in w_range)}


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def init_student(student: torch.nn.Module, teacher: torch.nn.Module) -> torch.nn.Module:
    """Copy the teacher's weights into the student; the student's w-MLP keeps its own (zero-output) start."""
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith("w_mlp.") for k in missing):
        raise ValueError(f"the student does not fit its teacher: missing {missing}, unexpected {unexpected}")
    return student


@torch.no_grad()
def guided_raw(teacher, z: torch.Tensor, lam: torch.Tensor, labels: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The teacher's guided prediction in its own output space, ``(1 + w) raw(z, c) - w raw(z, null)``: one call on
    the doubled batch. ``w`` has one value per sample."""
    null = torch.full_like(labels, _num_classes(teacher))
    raw_c, raw_u = teacher.raw(torch.cat([z, z]), torch.cat([lam, lam]), torch.cat([labels, null])).float().chunk(2)
    w = w.float().reshape((-1,) + (1,) * (z.ndim - 1))
    return (1 + w) * raw_c - w * raw_u


def distill_loss(student, teacher, x: torch.Tensor, labels: torch.Tensor, generator=None, lam_min: float = -20.0,
                 lam_max: float = 20.0, density: str = "cosine", rows: slice | None = None) -> torch.Tensor:
    """Stage one's loss: ``|raw_s(z, lam, c, w) - guided_raw_t(z, lam, c, w)|^2`` averaged over pixels and the batch,
    with ``w`` uniform in the student's ``guidance_range`` and ``lam`` from the training density. All draws are made
    for the whole batch (``rows``: the rows this process computes, as in ``predictions.prediction_loss``)."""
    w_min, w_max = student.config.guidance_range
    n = x.shape[0]
    lam = sample_lams(density, n, lam_min, lam_max, generator, x.dtype, x.device)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    w = w_min + (w_max - w_min) * torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
    if rows is not None:
        x, labels, lam, eps, w = x[rows], labels[rows], lam[rows], eps[rows], w[rows]
    z = q_sample(x, lam, eps)
    target = guided_raw(teacher, z, lam, labels, w)
    return (student.raw(z, lam, labels, w).float() - target).pow(2).flatten(1).mean(1).mean()


def distilled(model, labels: torch.Tensor, w, *, student=None):
    """Guidance by a distilled student (Meng et al. 2023, stage one): ``eps_fn(z, lam) = student(z, lam, c, w)``,
    one network pass per evaluation (CFG: two). ``student`` is a network with a guidance input
    (``config.guidance_range``); the commands load the shipped student when none is given. ``model`` (the
    teacher) is not called. ``w`` must lie in the range the student was distilled for.
    """
    net = student if student is not None else model
    config = getattr(net, "config", None)
    w_range = getattr(config, "guidance_range", None)
    if w_range is None:
        raise ValueError("guidance 'distilled' needs a distilled student (a network trained with `minicfg train "
                         "--objective distill`): pass student=... (--student PATH)")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    check_labels(labels, _num_classes(net), allow_null=False)
    check_w_spec(w)
    lo, hi = w_range

    def eps_fn(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != labels.shape[0]:
            raise ValueError(f"batch of {z.shape[0]} noisy inputs for {labels.shape[0]} labels")
        w_now = torch.as_tensor(_w_at(w, lam), dtype=torch.float32, device=z.device)
        if bool((w_now < lo - 1e-9).any()) or bool((w_now > hi + 1e-9).any()):
            raise ValueError(f"this student was distilled for w in [{lo:g}, {hi:g}], asked for w = "
                             f"{w_now.min().item():g}..{w_now.max().item():g}; guide the teacher with CFG instead, "
                             f"or distil a student for that range (--w-max)")
        return net(z, lam, labels, w_now.expand(z.shape[0]) if w_now.ndim == 0 else w_now)

    return eps_fn
