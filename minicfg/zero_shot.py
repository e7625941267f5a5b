"""The CFG model as a zero-shot classifier: the class whose eps-prediction error is lowest (Li et al. 2023; Clark &
Jaini 2023).

Why it works. The variational bound of a diffusion model (Kingma et al. 2021, VDM), written in log-SNR time, is

    -log p(x | c) <= 1/2 * integral over lam of E_eps ||eps - eps(z_lam, lam, c)||^2 dlam + (terms free of c),

with ``z_lam = alpha x + sigma eps`` (``derivations.elbo.derive_elbo_in_lam`` derives the change of variables from
VDM's time form). Bayes' rule with a uniform prior, ``p(c | x) = p(x | c) / sum_c' p(x | c')``, then makes the
class with the smallest weighted error the most probable one. A CFG model is trained on exactly these errors for
every label, so it carries this classifier without ever having been trained as one. For a Gaussian class the
bound is exact: half the integrated expected error is ``-log N(x; mu_c, s_c^2 I)`` up to a constant
(``derivations.elbo.derive_gaussian_class_error``), which ``tests/test_zero_shot.py`` checks on
:mod:`minicfg.toy`.

The estimate. For each image, ``n_noise`` pairs ``(lam_k, eps_k)`` are drawn once and shared by all classes, so
the noise that is common to every class cancels from the comparison (the argmin sees only how the predictions
differ, not how lucky the draws were). The pairs are drawn per image from a generator seeded by ``(seed,
index of the image)``, so the errors do not depend on ``batch_size`` or on how the work is split. The
log-SNRs are stratified: ``u_k = (k + r_k) / K`` with ``r_k ~ U[0, 1)``, mapped to lam by the weighting's
schedule, and each draw counts equally. The weightings (:data:`ERROR_WEIGHTINGS`):

- ``"training"`` (default): lam from the cosine schedule, the density the model was trained with, so the error
  is the model's own training loss for that label. This is Li et al.'s choice (``t`` uniform, equal weights:
  eps-MSE under the training density). It puts fewer than 1 draw in 200 above lam = 10.
- ``"elbo"``: lam uniform on ``[lam_min, lam_max]``, the weighting of the bound above (a likelihood
  estimate: ``(lam_max - lam_min) / 2 * D * error`` is ``-log p(x | c)`` up to a constant, ``D`` pixels).
  A quarter of its draws lie above lam = 10, where the errors are orders of magnitude larger and a single
  draw's vote is close to chance, so they dominate the mean: it is far less accurate for the same K (notebook 09
  measures the votes by lam).

``docs/zero_shot.md`` measures both on 1,000 MNIST test digits beside the evaluation classifier and the noisy
classifier. ``minicfg classify IMAGES.npz`` runs :func:`classify_report`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ._checks import as_images
from .schedules import alpha_sigma, check_lam_range, log_snr_cosine, log_snr_uniform

__all__ = ["ERROR_WEIGHTINGS", "DEFAULT_WEIGHTING", "noise_draws", "class_errors_per_draw", "class_errors",
           "classify", "load_images", "classify_file", "classify_report"]

#: name -> (u in [0, 1], lam_min, lam_max) -> lam; every draw counts equally, so the schedule is the weighting.
ERROR_WEIGHTINGS = {"training": log_snr_cosine, "elbo": log_snr_uniform}
DEFAULT_WEIGHTING = "training"


def _check_n_noise(n_noise) -> None:
    if isinstance(n_noise, bool) or not isinstance(n_noise, int) or n_noise < 1:
        raise ValueError(f"n_noise is the number of (lam, eps) draws per image and must be a positive integer "
                         f"such as 16, got {n_noise!r}")


def _check_weighting(weighting: str) -> None:
    if weighting not in ERROR_WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {sorted(ERROR_WEIGHTINGS)}")


def _image_generator(seed: int, index: int) -> torch.Generator:
    """A generator for image ``index`` alone, seeded from (seed, index) through numpy's SeedSequence."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def noise_draws(index: int, shape: tuple[int, ...], n_noise: int, seed: int = 0, weighting: str = DEFAULT_WEIGHTING,
                lam_min: float = -20.0, lam_max: float = 20.0,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_noise`` shared draws of image ``index``: log-SNRs (K,), stratified in ``u``, and noise (K, *shape)."""
    _check_n_noise(n_noise)
    _check_weighting(weighting)
    check_lam_range(lam_min, lam_max)
    g = _image_generator(seed, index)
    u = (torch.arange(n_noise, dtype=torch.float64) + torch.rand(n_noise, generator=g, dtype=torch.float64)) / n_noise
    lam = ERROR_WEIGHTINGS[weighting](u, lam_min, lam_max).clamp(lam_min, lam_max).to(dtype)
    return lam, torch.randn((n_noise, *shape), generator=g, dtype=dtype)


def _as_model_images(model, images) -> torch.Tensor:
    """Images as float in [-1, 1], (N, C, H, W) of the model's shape when it has a config (uint8 0..255 accepted)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "image_size"):
        shape = (config.image_channels, config.image_size, config.image_size)
    else:
        shape = tuple(torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images).shape[1:])
    return as_images(images, shape)


@torch.inference_mode()
def class_errors_per_draw(model, images, *, n_noise: int = 16, seed: int = 0, weighting: str = DEFAULT_WEIGHTING,
                          lam_min: float = -20.0, lam_max: float = 20.0, num_classes: int | None = None,
                          batch_size: int = 500, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The eps-prediction error of every image, class and draw: ((N, num_classes, K) float64, lams (N, K)).

    ``model(z, lam, labels) -> eps`` is a class-conditional diffusion model (the shipped CFG model, or anything
    with that signature; then pass ``num_classes``). ``images``: (N, C, H, W), uint8 0..255 or float in
    [-1, 1]. The error is the squared difference of ``eps`` and ``model(alpha x + sigma eps, lam, c)``, averaged
    over pixels; the ``K = n_noise`` draws of an image are those of :func:`noise_draws` and are the same for
    every class. All N * num_classes * K network inputs are evaluated in batches of ``batch_size``.
    """
    _check_n_noise(n_noise)
    _check_weighting(weighting)
    if num_classes is None:
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
        if num_classes is None:
            raise ValueError("this model has no config.num_classes; pass num_classes=")
    x = _as_model_images(model, images)
    n, shape, k = x.shape[0], tuple(x.shape[1:]), n_noise
    params = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    device = x.device if params is None else params.device
    per_chunk = max(1, batch_size // (num_classes * k))  # images whose classes and draws fill about one batch
    errors = torch.empty(n, num_classes, k, dtype=torch.float64)
    lams = torch.empty(n, k, dtype=x.dtype)
    classes = torch.arange(num_classes)
    with tqdm(total=n, disable=not progress, desc=f"zero-shot K={k}", unit="image", leave=False) as bar:
        for start in range(0, n, per_chunk):
            idx = range(start, min(n, start + per_chunk))
            draws = [noise_draws(i, shape, k, seed, weighting, lam_min, lam_max, x.dtype) for i in idx]
            lam = torch.stack([d[0] for d in draws])  # (m, K)
            eps = torch.stack([d[1] for d in draws])  # (m, K, *shape)
            lams[start:start + len(idx)] = lam
            m = len(idx)
            # one row per (image, class, draw); the class index varies slower than the draw
            lam_rows = lam[:, None, :].expand(m, num_classes, k).reshape(-1)
            eps_rows = eps[:, None].expand(m, num_classes, k, *shape).reshape(-1, *shape)
            x_rows = x[start:start + m, None, None].expand(m, num_classes, k, *shape).reshape(-1, *shape)
            label_rows = classes[None, :, None].expand(m, num_classes, k).reshape(-1)
            alpha, sigma = alpha_sigma(lam_rows.reshape(-1, *([1] * len(shape))))
            z_rows = alpha * x_rows + sigma * eps_rows
            out = []
            for b in range(0, len(z_rows), batch_size):
                z = z_rows[b:b + batch_size].to(device)
                if z.ndim == 4:
                    z = z.contiguous(memory_format=torch.channels_last)
                pred = model(z, lam_rows[b:b + batch_size].to(device), label_rows[b:b + batch_size].to(device))
                out.append((pred.float().cpu() - eps_rows[b:b + batch_size].float()).pow(2).flatten(1).mean(1))
            errors[start:start + m] = torch.cat(out).double().reshape(m, num_classes, k)
            bar.update(m)
    return errors, lams


def class_errors(model, images, *, n_noise: int = 16, seed: int = 0, weighting: str = DEFAULT_WEIGHTING,
                 lam_min: float = -20.0, lam_max: float = 20.0, num_classes: int | None = None, batch_size: int = 500,
                 progress: bool = False) -> torch.Tensor:
    """The weighted mean eps-prediction error of every image under every class label, (N, num_classes) float64.

    The mean over the ``n_noise`` shared draws of :func:`class_errors_per_draw` (same arguments). Lower is more
    likely: with ``weighting="elbo"``, ``(lam_max - lam_min) / 2 * D * errors`` estimates ``-log p(x | c)`` up to
    a constant shared by the classes (``D`` values per image).
    """
    errors, _ = class_errors_per_draw(model, images, n_noise=n_noise, seed=seed, weighting=weighting,
                                      lam_min=lam_min, lam_max=lam_max, num_classes=num_classes,
                                      batch_size=batch_size, progress=progress)
    return errors.mean(2)


def classify(model, images, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-shot class predictions: (labels (N,) int64, errors (N, num_classes)), the label the class of lowest
    error. ``options`` are those of :func:`class_errors` (``n_noise``, ``seed``, ``weighting``, ...)."""
    errors = class_errors(model, images, **options)
    return errors.argmin(1), errors


# -- the `minicfg classify` command ------------------------------------------------------------------------------
def load_images(path, dataset: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and check an NPZ for classification: ``images`` uint8 (N, C, H, W) of the shape of the data set the
    file records (else ``dataset``, else mnist) and, if the file has them, ``labels`` (N,) in 0..num_classes-1
    (else None), through :func:`minicfg.sample_files.read_npz`. Problems raise a one-line error."""
    from .sample_files import read_npz

    arrays = read_npz(path, dataset, null_label=False)
    return arrays["images"], arrays["labels"]


def classify_file(path, checkpoint=None, dataset: str | None = None, progress: bool = False, device=None,
                  **options) -> tuple[np.ndarray | None, torch.Tensor, torch.Tensor, float]:
    """Zero-shot classification of the images in an NPZ by a diffusion model (``checkpoint``: a weights file or
    training folder, None for the shipped model of the data set; a model of another data set is refused). The
    data set is the one the file records (`minicfg sample` writes it), else ``dataset``, else mnist. On ``device``
    (None: the first available of cuda, mps and cpu). Returns (labels of the file or None, predictions (N,),
    errors (N, num_classes), seconds spent classifying)."""
    from .checkpoint import load_model
    from .devices import pick_device
    from .sample_files import npz_dataset

    dataset = npz_dataset(path, dataset)
    images, labels = load_images(path, dataset)
    model, _ = load_model(checkpoint, dataset=dataset, device=pick_device(device))
    t = time.perf_counter()
    predicted, errors = classify(model, images, progress=progress, **options)
    return labels, predicted, errors, time.perf_counter() - t


def classify_report(path, checkpoint=None, dataset: str | None = None, n_noise: int = 16, seed: int = 0,
                    weighting: str = DEFAULT_WEIGHTING, out=None, progress: bool = False, device=None) -> str:
    """``minicfg classify``: classify an NPZ's images, write ``out`` (a CSV of predictions and errors) if given,
    and return a report: the accuracy when the file has labels, else the count of each predicted class."""
    from .data import get_dataset
    from .sample_files import npz_dataset

    _check_n_noise(n_noise)
    dataset = npz_dataset(path, dataset)
    if out is not None and Path(out).suffix != ".csv":
        raise ValueError(f"--out must end in .csv, got {Path(out).name!r}")
    labels, predicted, errors, seconds = classify_file(path, checkpoint, dataset, progress=progress, device=device,
                                                       n_noise=n_noise, seed=seed, weighting=weighting)
    names = get_dataset(dataset).class_names
    n = len(predicted)
    lines = [f"{path}: {n} images classified zero-shot by the diffusion model (lowest eps-prediction error over "
             f"K={n_noise} shared (lam, eps) draws, weighting {weighting!r}, seed {seed}) in {seconds:.1f} s"]
    if labels is not None:
        hits = int((predicted.numpy() == labels).sum())
        lines.append(f"accuracy {hits / n:.3f} ({hits} of {n})")
    counts = np.bincount(predicted.numpy(), minlength=errors.shape[1])
    lines.append("predicted: " + ", ".join(f"{names[c]}: {counts[c]}" for c in range(len(counts))))
    if out is not None:
        lines.append(f"predictions written to {_write_csv(out, labels, predicted, errors)}")
    return "\n".join(lines)


def _write_csv(out, labels, predicted, errors) -> Path:
    import csv

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "predicted", *[f"error_{c}" for c in range(errors.shape[1])]])
        for i in range(len(predicted)):
            writer.writerow([i, "" if labels is None else int(labels[i]), int(predicted[i]),
                             *[f"{float(e):.6g}" for e in errors[i]]])
    return out
