"""Safetensors storage of weights with a JSON config; loading checks both and never unpickles.

A weights file ``NAME.safetensors`` carries its config in the safetensors metadata (key ``config``)
and, for people to read, a copy in ``NAME.json`` beside it. Files are written atomically (a temp file
in the same folder, then ``os.replace``), so a run killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .data import DEFAULT_DATASET
from .devices import pick_device
from .nets import build_model

__all__ = [
    "CheckpointError",
    "ROLES",
    "atomic_write_bytes",
    "save_tensors",
    "load_tensors",
    "save_weights",
    "load_model",
    "trained_on",
    "checkpoint_dataset",
    "shipped_weights",
    "fingerprint",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"

#: What a saved network is for -> the architectures that may fill that role (``nets.ARCHITECTURES``).
#: role -> the architectures that may fill it; "paper_model" is a diffusion model trained with the paper's own
#: objective (eps-prediction, Alg. 1), kept beside the default "model" for comparison; "weak_model" is the smaller,
#: shorter-trained diffusion model that autoguidance guides the main one with; "conditional_model" a diffusion model
#: trained without label dropout (p_uncond = 0, no null label learnt), which independent-condition guidance guides;
#: "distilled_model" a guidance-distilled student of the "model" (minicfg.distill)
ROLES = {"model": ("unet",), "paper_model": ("unet",), "weak_model": ("unet",), "conditional_model": ("unet",),
         "distilled_model": ("unet",),
         "noisy_classifier": ("noisy_classifier",), "evaluator": ("evaluator", "mnist-evaluator", "cifar_evaluator")}


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, truncated, or does not match its config."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and ``os.replace`` (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; weights and configs are meant to be read by others
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically save ``tensors`` with the JSON-serialisable ``meta`` stored as metadata key ``meta``."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(Path(path), save(tensors, metadata={"meta": json.dumps(meta)}))


def load_tensors(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load tensors and metadata saved by :func:`save_tensors`; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path (train one with `minicfg train`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_raw = (f.metadata() or {}).get("meta")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (corrupt or truncated: {err}); "
            f"restore it, re-download it, or retrain with `minicfg train`"
        ) from err
    if meta_raw is None:
        raise CheckpointError(f"{path} has no minicfg metadata; it was not written by minicfg")
    try:
        meta = json.loads(meta_raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} has corrupt metadata ({err})") from err
    return tensors, meta


def save_weights(path, model: torch.nn.Module, info: dict) -> None:
    """Save a model's weights (safetensors) and its config and provenance ``info`` (also as JSON)."""
    path = Path(path)
    meta = {"model": model.config.to_dict(), **info}
    save_tensors(path, model.state_dict(), meta)
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())


def shipped_weights(dataset: str = DEFAULT_DATASET, role: str = "model") -> Path:
    """Path of the weights for ``role`` that ship with the package for ``dataset`` (its registry record)."""
    from .data import get_dataset

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {sorted(ROLES)}")
    record = get_dataset(dataset)
    if role not in record.weights:
        raise CheckpointError(
            f"no shipped {role} weights for {dataset!r} (shipped: {sorted(record.weights) or 'none'}); train "
            f"your own and pass its path"
        )
    path = WEIGHTS_DIR / record.weights[role]
    if not path.is_file():
        raise CheckpointError(f"the shipped {dataset} {role} weights are missing from {path}; reinstall minicfg, "
                              f"or pass the path of your own weights")
    return path


_CACHE: dict[str, tuple[dict[str, torch.Tensor], dict, str]] = {}


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict, str]:
    """(tensors, metadata, fingerprint) of a weights file, read once per process and version of the file."""
    st = path.stat()
    key = f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}"
    if key not in _CACHE:
        tensors, meta = load_tensors(path)
        _CACHE[key] = (tensors, meta, fingerprint(tensors))
    return _CACHE[key]


def fingerprint(weights: dict[str, torch.Tensor] | torch.nn.Module) -> str:
    """A short hash of a state dict (or of a network's weights), to key caches of what was computed with it."""
    tensors = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    digest = hashlib.sha256()
    for name, value in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def trained_on(meta: dict) -> str | None:
    """The registered data set a weights file's metadata says it was trained on (``dataset``, or the recipe's),
    or None where it names none (older files hold a description there instead of a name)."""
    from .data import DATASETS

    for name in (meta.get("dataset"), (meta.get("train") or {}).get("dataset")):
        if isinstance(name, str) and name in DATASETS:
            return name
    return None


def checkpoint_dataset(path) -> str | None:
    """The registered data set a weights file or training folder records (:func:`trained_on`), or None where it
    records none or ``path`` is None (the commands then use their default data set)."""
    if path is None:
        return None
    path = Path(path)
    path = path / "checkpoint.safetensors" if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path (train one with `minicfg train`)")
    return trained_on(_read(path)[1])


def _check_dataset(path: Path, meta: dict, config, role: str, dataset: str) -> None:
    """Refuse a file trained on another data set than ``dataset``: by the data set its metadata records, else by
    the image shape of its network's ``config``."""
    from .data import get_dataset

    record, theirs = get_dataset(dataset), trained_on(meta)
    flag = "--evaluator" if role == "evaluator" else "--checkpoint"
    a = "an" if role[0] in "aeiou" else "a"
    if theirs is not None and theirs != record.name:
        raise CheckpointError(
            f"{path} holds {a} {role} trained on {theirs}, not on {record.name}: pass --dataset {theirs} to use it, "
            f"or {a} {role} trained on {record.name} (leave out {flag} for the shipped one)")
    size = getattr(config, "image_size", None)
    shape = (getattr(config, "image_channels", None), size, size)
    if theirs is None and None not in shape and shape != tuple(record.image_shape):
        raise CheckpointError(
            f"{path} holds {a} {role} of {' x '.join(map(str, shape))} images, not of {record.name}'s "
            f"{' x '.join(map(str, record.image_shape))}: pass the --dataset it was trained on, or {a} {role} "
            f"trained on {record.name} (leave out {flag} for the shipped one)")


def load_model(path=None, dataset: str | None = None, role: str = "model",
               device="cpu") -> tuple[torch.nn.Module, dict]:
    """The one way every saved network is read: build it from its stored config and load its weights.

    ``path`` may be a weights file, a training checkpoint (its EMA weights are used), a training folder,
    or None for the shipped weights of ``dataset`` (default mnist) in ``role`` ("model": the diffusion model,
    "noisy_classifier": the classifier of classifier guidance, "evaluator": the evaluation classifier of
    the metrics). A file made for another role is refused with a message that says what it is; so is a
    ``path`` trained on another data set than a ``dataset`` given with it (as the commands give it). Files
    are read once per process (and again only when they change); every call returns a fresh network in
    eval mode, with ``.fingerprint``, a short hash of its weights. Returns (network, metadata).

    ``device`` is where the network is put: "cpu" by default, because a caller that gets a bare network feeds
    it tensors of its own (the notebooks' are on the CPU); pass None or "auto" for the best available one
    (:func:`minicfg.devices.pick_device`), as the commands do.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {sorted(ROLES)}")
    if path is None:
        path, dataset = shipped_weights(dataset or DEFAULT_DATASET, role), None
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path (train one with `minicfg train`)")
    tensors, meta, fp = _read(path)
    if "model" not in meta:
        raise CheckpointError(f"{path} metadata has no model config")
    arch = meta["model"].get("arch", "unet")
    if arch not in ROLES[role]:
        is_role = next((r for r, archs in ROLES.items() if arch in archs), arch)
        raise CheckpointError(f"{path} holds the weights of a {is_role!r} network (architecture {arch!r}), not of "
                              f"a {role!r} network; pass a {role} checkpoint here")
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else ""
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)} if prefix else tensors
    try:
        model = build_model(meta["model"])
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    if dataset is not None:
        _check_dataset(path, meta, model.config, role, dataset)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            details.append(
                f"{len(wrong)} tensors of the wrong shape (e.g. {k}: file {tuple(state[k].shape)}, "
                f"config {tuple(expected[k].shape)})"
            )
        raise CheckpointError(f"{path} does not match its config: " + "; ".join(details))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path} holds non-finite weights (e.g. {bad[:3]}); the training run diverged")
    model.load_state_dict(state)
    model.fingerprint = fp
    # channels_last convolutions are about 1.7x faster on CPU (docs/speed.md)
    return model.to(pick_device(device), memory_format=torch.channels_last).eval(), meta
