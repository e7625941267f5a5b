"""Which device a network runs on: :func:`pick_device` chooses cuda, then mps, then cpu, unless told one."""

from __future__ import annotations

import torch

__all__ = ["pick_device", "available_devices"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device kinds this process can use, in the order :func:`pick_device` prefers them."""
    kinds = ["cuda"] if torch.cuda.is_available() else []
    return kinds + (["mps"] if _mps_available() else []) + ["cpu"]


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``name`` ("cpu", "cuda", "cuda:1", "mps") if this machine has it; None or "auto"
    picks the first available of cuda, mps and cpu. An unavailable or unknown device is a ValueError that says
    why and what to pass instead (the CLI's ``--device``)."""
    if name is None or str(name).strip().lower() == "auto":
        return torch.device(available_devices()[0])
    text = str(name).strip().lower()
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; pass cpu, cuda, cuda:INDEX, mps or auto "
                         f"(available here: {', '.join(available_devices())})") from None
    fix = f"pass --device cpu (or auto, which picks {available_devices()[0]} here)"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{text} was asked for but torch.cuda.is_available() is False (no NVIDIA GPU, or a "
                             f"torch build without CUDA); {fix}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{text} was asked for but this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), numbered from 0; {fix}")
    elif device.type == "mps":
        if not _mps_available():
            raise ValueError(f"mps was asked for but torch.backends.mps.is_available() is False (not an Apple GPU "
                             f"with a torch build for it); {fix}")
    elif device.type != "cpu":
        raise ValueError(f"device {name!r} is not supported by minicfg; pass cpu, cuda, cuda:INDEX, mps or auto")
    return device
