"""Input checks shared by the library: each raises a ValueError that says what was expected and how to fix it.

Private: users meet these through the messages, not by calling them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Guidance strengths beyond this are almost certainly a mistake (the paper's largest is w = 4).
W_MAX = 100.0


def check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise ValueError naming each tensor's shape unless all shapes are equal."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shapes must match, got {shapes}")


def check_labels(labels: torch.Tensor, num_classes: int, allow_null: bool = True) -> None:
    """Raise ValueError unless ``labels`` are integers in [0, num_classes] (the last being the null label)."""
    if torch.is_floating_point(labels) or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    hi = num_classes if allow_null else num_classes - 1
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > hi):
        raise ValueError(
            f"labels must lie in [0, {hi}] ({num_classes} classes"
            + (f", {num_classes} being the null label" if allow_null else "")
            + f"), got min {int(labels.min())}, max {int(labels.max())}"
        )


def check_w(w) -> None:
    """Raise ValueError unless every ``w`` (a number or a tensor) is finite and within [-1, W_MAX]."""
    values = w.detach().flatten().tolist() if torch.is_tensor(w) else [w]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"guidance strength w must be a finite number, got {value!r}")
        if value < -1.0 or value > W_MAX:
            raise ValueError(
                f"guidance strength w={value} is outside [-1, {W_MAX:g}]: w=-1 is the unconditional model, "
                f"w=0 the conditional one, and the paper uses w up to 4. If you meant a 'guidance scale' s "
                f"(= 1 + w), pass w = s - 1 (see w_from_guidance_scale)"
            )


def check_w_spec(w) -> None:
    """A ``w`` given as a number or tensor is checked now; a function of lam is checked each time it is evaluated."""
    if not callable(w) or torch.is_tensor(w):
        check_w(w)


def check_lams(lams: torch.Tensor) -> torch.Tensor:
    """Validate a sampling grid: 1-D, at least 2 finite values, strictly increasing."""
    lams = torch.as_tensor(lams)
    if lams.ndim != 1 or lams.numel() < 2:
        raise ValueError(f"lams must be a 1-D grid of at least 2 log-SNRs, got shape {tuple(lams.shape)}")
    if not bool(torch.isfinite(lams).all()):
        raise ValueError("lams must be finite")
    if not bool((lams[1:] > lams[:-1]).all()):
        raise ValueError(
            "lams must be strictly increasing: sampling walks the log-SNR up from noise (lam_min) to data "
            "(lam_max); use minicfg.schedules.sampling_lams(n_steps)"
        )
    return lams


def keyword_options(fn, reserved: tuple[str, ...] = ()) -> list[str] | None:
    """The keyword-only parameters of ``fn`` other than ``reserved`` (None if it takes ``**kwargs``)."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY and p not in reserved]


def check_options(kind: str, name: str, fn, options: dict, reserved: tuple[str, ...] = ()) -> None:
    """Raise ValueError if ``options`` holds keywords that the registered ``fn`` does not take.

    ``kind`` and ``name`` (e.g. "sampler" and its registered name) make the message; the options ``fn``
    accepts are read from its signature (keyword-only parameters other than ``reserved``).
    """
    accepted = keyword_options(fn, reserved)
    unknown = sorted(set(options) - set(accepted)) if accepted is not None else []
    if unknown:
        raise ValueError(
            f"{kind} {name!r} does not take {', '.join(unknown)}; its options are {', '.join(accepted) or 'none'}"
        )


def as_images(images, shape: tuple[int, int, int] = (1, 28, 28)) -> torch.Tensor:
    """Check and convert images to float32 in [-1, 1], shape (N, *shape) (a missing channel axis is added for
    one-channel images).

    uint8 arrays are read as 0..255; floating arrays must already lie in [-1, 1] (a float array in
    0..255 is refused rather than silently mis-scaled).
    """
    x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images.detach().cpu()
    if x.ndim == 3 and shape[0] == 1:
        x = x.unsqueeze(1)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        alt = f" or (N, {shape[1]}, {shape[2]})" if shape[0] == 1 else ""
        raise ValueError(f"images must have shape (N, {', '.join(map(str, shape))}){alt}, got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float().div_(127.5).sub_(1.0)
    if not torch.is_floating_point(x):
        raise ValueError(f"images must be uint8 (0..255) or float in [-1, 1], got dtype {x.dtype}")
    x = x.float()
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("images contain NaN or infinite values")
    if x.numel() and (float(x.min()) < -1.001 or float(x.max()) > 1.001):
        raise ValueError(
            f"float images must lie in [-1, 1], got values in [{float(x.min()):.3g}, {float(x.max()):.3g}] "
            f"(pass uint8 for 0..255 images)"
        )
    return x.clamp(-1.0, 1.0)
