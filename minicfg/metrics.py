"""Offline sample-quality metrics, computed with the evaluation classifier of a data set (``minicfg.evaluator``).

What is measured, on the evaluator's 128-d penultimate features and on its softmax:

- **classifier FID** (:func:`classifier_fid`): the Frechet distance between Gaussians fitted to the features
  of the samples and of real MNIST digits (by default the 10,000 test digits). Lower is better; it grows
  when samples are unrealistic *or* not diverse enough (it compares means and covariances).
- **inception score** (:func:`inception_score`): ``exp E_x KL(p(y|x) || p(y))``, from 1 (every sample gets
  the same class distribution) up to 10 (each sample confidently one class, classes used evenly).
- **precision and recall** (:func:`precision_recall`, Kynkaenniemi et al. 2019): the fraction of samples
  that fall inside the k-NN manifold of the real features (fidelity) and the fraction of real digits that
  fall inside the k-NN manifold of the samples (coverage). They split what FID lumps together.
- **label accuracy** (:func:`label_accuracy`): the fraction of samples the evaluator recognises as the
  label they were asked for; the quantity that guidance pushes up.

What these numbers can and cannot say, compared with the Inception-network FID of the papers:

- The features come from a ~100k-parameter CNN trained on MNIST alone, not from Inception-v3 trained on
  ImageNet. They are sensitive to what distinguishes digits (strokes, shapes, class) and blind to things
  that do not matter for the digit class. The scale of the numbers is unrelated to published FID values:
  a classifier FID of 2 is not "an FID of 2", and numbers from other evaluators (or other weights of this
  one) cannot be compared. Compare runs with the same evaluator weights, the same reference and the same
  number of samples only.
- FID is biased upwards for finite sample sets: even real digits held out from the reference do not score
  0. The classifier FID of *real held-out digits* with the same number of images is the floor a perfect
  generator would reach (``docs/metrics.md`` lists it for 1,000 and 5,000 digits); report it beside any
  sample's number.
- A classifier-based metric can be fooled by images that push the classifier's features without looking
  like digits (adversarial patterns), which is one reason the evaluator is *not* the guidance classifier.
- Inception score ignores the real data entirely, and its maximum (10) is reached by a generator that
  draws one perfect digit per class; precision and recall depend on k and on the number of samples (both
  sets are compared at equal size here), so only compare values computed with the same settings.

Images are accepted either as floats in [-1, 1] (the library's convention, e.g. what
:func:`minicfg.generate.generate` returns) or as uint8 in 0..255 (what ``minicfg sample --out FILE.npz``
writes), of the data set's image shape, e.g. (N, 1, 28, 28) or (N, 28, 28) for MNIST. Every function takes
``dataset`` (default ``data.DEFAULT_DATASET``, mnist): its registry record gives the image shape, the shipped
evaluator and the real images of the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._checks import as_images
from .checkpoint import CheckpointError, fingerprint, load_tensors, save_tensors
from .data import DEFAULT_DATASET

__all__ = [
    "as_images",
    "features_and_probs",
    "gaussian_stats",
    "frechet_distance",
    "class_spread",
    "precision_recall",
    "inception_score",
    "label_accuracy",
    "Reference",
    "load_reference",
    "classifier_fid",
    "evaluate",
    "load_samples",
    "evaluate_npz",
    "format_table",
    "evaluate_report",
]


# -- inputs ---------------------------------------------------------------------------------------
def _evaluator(evaluator, dataset: str = DEFAULT_DATASET):
    from .evaluator import load_evaluator

    if evaluator is None or isinstance(evaluator, (str, Path)):
        return load_evaluator(evaluator, dataset=dataset)[0]
    return evaluator


def _shape(model) -> tuple[int, int, int]:
    c = model.config
    return (c.image_channels, c.image_size, c.image_size)


@torch.inference_mode()
def features_and_probs(images, evaluator=None, batch_size: int = 1000,
                       dataset: str = DEFAULT_DATASET) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (N, feature_dim) float32 and class probabilities (N, K) float64 of ``images``.

    ``evaluator`` is an :class:`~minicfg.nets.EvaluatorNet`, a weights path, or None (the shipped one of
    ``dataset``).
    """
    model = _evaluator(evaluator, dataset)
    x = as_images(images, _shape(model))
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    feats, probs = [], []
    for i in range(0, len(x), batch_size):
        f = model.features(x[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last))
        feats.append(f.float().cpu())
        probs.append(torch.softmax(model.head(f).double().cpu(), dim=1))
    model.train(was)
    if not feats:
        return torch.empty(0, model.config.feature_dim), torch.empty(0, model.config.num_classes, dtype=torch.float64)
    return torch.cat(feats), torch.cat(probs)


# -- Frechet distance -----------------------------------------------------------------------------
def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N-1) covariance of features (N, d), in float64."""
    f = np.asarray(features.cpu() if torch.is_tensor(features) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, d) for a covariance, got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition (negative eigenvalues,
    which are rounding errors here, are set to 0)."""
    vals, vecs = np.linalg.eigh((c + c.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2), in float64.

    ``|mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^1/2 cov2 cov1^1/2)^1/2)``. The matrix inside the
    last trace is symmetric positive semi-definite (unlike ``cov1 cov2``, which has the same eigenvalues
    but is not symmetric), so both square roots are taken by ``eigh`` and stay real, without scipy's
    ``sqrtm`` or its complex round-off. A tiny negative result from rounding is returned as 0.
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64) for m in (mu1, mu2))
    cov1, cov2 = (np.asarray(c, dtype=np.float64) for c in (cov1, cov2))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            f"need mu of shape (d,) and cov of shape (d, d) for both; got {mu1.shape}, {cov1.shape}, "
            f"{mu2.shape}, {cov2.shape}"
        )
    if not all(np.isfinite(a).all() for a in (mu1, mu2, cov1, cov2)):
        raise ValueError("means and covariances must be finite")
    s1 = _sqrtm_psd(cov1)
    inner = s1 @ cov2 @ s1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean), 0.0)


def class_spread(features, labels) -> dict:
    """The total spread ``tr C`` of features (N, d) split by class (the law of total variance).

    ``tr C`` (of the unbiased covariance, as :func:`gaussian_stats` returns it) is the sum of a **within-class**
    part, each feature's squared distance to its own class's mean, and a **between-class** part, each class
    mean's squared distance to the overall mean weighted by the class's size, both divided by N - 1. Returns
    ``{"total", "within", "between", "classes"}`` (floats, float64 arithmetic; ``classes``: the labels present,
    sorted). Guidance can move the two parts in opposite directions: samples of one class more alike (within
    falls) while the classes move apart (between rises).
    """
    f = np.asarray(features.cpu() if torch.is_tensor(features) else features, dtype=np.float64)
    y = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, d), got {f.shape}")
    if y.shape != (f.shape[0],):
        raise ValueError(f"need one label per feature row: labels of shape ({f.shape[0]},), got {y.shape}")
    mean = f.mean(0)
    classes = np.unique(y)
    within = between = 0.0
    for c in classes:
        fc = f[y == c]
        mc = fc.mean(0)
        within += float(((fc - mc) ** 2).sum())
        between += len(fc) * float(((mc - mean) ** 2).sum())
    n1 = f.shape[0] - 1
    return {"total": (within + between) / n1, "within": within / n1, "between": between / n1,
            "classes": classes.tolist()}


# -- precision and recall -------------------------------------------------------------------------
def _kth_nn_radii(feats: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    radii = []
    for i in range(0, len(feats), chunk):
        d = torch.cdist(feats[i:i + chunk], feats)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the smallest distance is the point itself (0)
    return torch.cat(radii)


def _coverage(query: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Fraction of ``query`` points inside at least one ball B(points_i, radii_i)."""
    inside = []
    for i in range(0, len(query), chunk):
        d = torch.cdist(query[i:i + chunk], points)
        inside.append((d <= radii[None, :]).any(dim=1))
    return float(torch.cat(inside).double().mean())


def precision_recall(real_feats, fake_feats, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019) with k-NN balls, in float64.

    The real manifold is the union of balls around each real feature with radius its distance to the
    k-th nearest other real feature; likewise for the fakes. Precision is the fraction of fakes inside
    the real manifold, recall the fraction of reals inside the fake manifold. Distances are computed
    ``chunk`` rows at a time, so memory stays at ``chunk * max(N)`` numbers. Both sets should have the
    same size (see :func:`evaluate`); both need more than ``k`` points.
    """
    real = torch.as_tensor(np.asarray(real_feats.cpu() if torch.is_tensor(real_feats) else real_feats),
                           dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake_feats.cpu() if torch.is_tensor(fake_feats) else fake_feats),
                           dtype=torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need two feature arrays (N, d) with the same d, got {tuple(real.shape)}, "
                         f"{tuple(fake.shape)}")
    if k < 1 or min(len(real), len(fake)) <= k:
        raise ValueError(f"need k >= 1 and more than k points in each set; k={k}, {len(real)} real, "
                         f"{len(fake)} fake")
    real_radii = _kth_nn_radii(real, k, chunk)
    fake_radii = _kth_nn_radii(fake, k, chunk)
    return _coverage(fake, real, real_radii, chunk), _coverage(real, fake, fake_radii, chunk)


# -- softmax metrics ------------------------------------------------------------------------------
def _check_probs(probs) -> np.ndarray:
    p = np.asarray(probs.cpu() if torch.is_tensor(probs) else probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probs must have shape (N >= 1, num_classes), got {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0 or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError("probs must be finite, non-negative, and each row must sum to 1 (pass softmax outputs)")
    return p


def inception_score(probs, splits: int = 1) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` with p(y) the mean of p(y|x) over the samples; mean over ``splits``.

    1 when every sample gets the same class distribution (e.g. one digit repeated); at most the number of
    classes, reached when each sample is confidently one class and classes are equally frequent.
    """
    p = _check_probs(probs)
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits must lie in [1, N={len(p)}], got {splits}")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        kl = np.where(part > 0, part * (np.log(np.clip(part, 1e-300, None)) - np.log(np.clip(py, 1e-300, None))),
                      0.0).sum(1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores))


def label_accuracy(probs, labels) -> float:
    """Fraction of samples whose most likely class (under the evaluator) is the requested ``labels``."""
    p = _check_probs(probs)
    y = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if y.shape != (len(p),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(p)},), got {y.dtype} {y.shape}")
    return float((p.argmax(1) == y).mean())


# -- reference statistics -------------------------------------------------------------------------
@dataclass
class Reference:
    """Features of real digits and their Gaussian statistics, for one evaluator."""

    name: str
    features: torch.Tensor
    mu: np.ndarray
    cov: np.ndarray

    @classmethod
    def from_features(cls, name: str, features: torch.Tensor) -> Reference:
        mu, cov = gaussian_stats(features)
        return cls(name, features, mu, cov)


_REFERENCES: dict[tuple[str, str, str, str, bool], Reference] = {}


def load_reference(ref="test", evaluator=None, disk_cache: bool = False, dataset: str = DEFAULT_DATASET) -> Reference:
    """Reference features of real images: ``"test"`` or ``"train"`` (the split of ``dataset``) or given images.

    A named reference is computed once per process, evaluator, data folder and smoke mode and kept in memory
    (its images are read only then); with
    ``disk_cache`` its features are also stored under ``$MINICFG_DATA/minicfg-cache/`` (keyed by a hash of
    the evaluator's weights, the data set, the split and its size) and read from there next time. Images
    passed directly are never cached.
    """
    if isinstance(ref, Reference):
        return ref
    model = _evaluator(evaluator, dataset)
    if not isinstance(ref, str):
        return Reference.from_features("images", features_and_probs(ref, model)[0])
    if ref not in ("test", "train"):
        raise ValueError(f"reference must be 'test', 'train', or images; got {ref!r}")
    from . import data
    from .smoke import is_smoke

    fp = getattr(model, "fingerprint", None) or fingerprint(model)
    # which images a split resolves to depends on the data folder and, when it lacks them, on smoke mode
    key = (fp, dataset, ref, str(data.data_root()), is_smoke())
    if key in _REFERENCES:
        return _REFERENCES[key]
    images = data.load(dataset, train=ref == "train").tensors[0]  # the shipped subset in smoke mode without data
    path = data.data_root() / "minicfg-cache" / f"evaluator-{fp}-{dataset}-{ref}-{len(images)}.safetensors"
    feats = None
    if disk_cache and path.is_file():
        try:
            feats = load_tensors(path)[0]["features"]
        except (CheckpointError, KeyError):
            feats = None
    if feats is None:
        feats = features_and_probs(images, model)[0]
        if disk_cache:
            save_tensors(path, {"features": feats}, {"kind": "evaluator-reference", "evaluator": fp,
                                                     "reference": f"{dataset}-{ref}", "n": len(images)})
    _REFERENCES[key] = out = Reference.from_features(ref, feats)
    return out


def classifier_fid(images, ref="test", evaluator=None, dataset: str = DEFAULT_DATASET) -> float:
    """Frechet distance between evaluator features of ``images`` and of the reference images (lower is better)."""
    model = _evaluator(evaluator, dataset)
    r = load_reference(ref, model, dataset=dataset)
    mu, cov = gaussian_stats(features_and_probs(images, model)[0])
    return frechet_distance(mu, cov, r.mu, r.cov)


# -- one entry point ------------------------------------------------------------------------------
def evaluate(images, labels=None, reference="test", evaluator=None, k: int = 3, seed: int = 0,
             disk_cache: bool = False, dataset: str = DEFAULT_DATASET) -> dict:
    """All metrics for one set of images (uint8 0..255 or float in [-1, 1], (N, C, H, W) of ``dataset``).

    Returns ``{"n", "accuracy", "fid", "inception_score", "precision", "recall", "reference",
    "n_reference"}``; ``accuracy`` counts the samples with a class label (the null label ``10`` requests
    none) and is None without ``labels``. ``reference`` is "test" (the test split of ``dataset``, e.g.
    the 10,000 MNIST test digits), "train", or a set of real images. Precision and recall compare the samples with an
    equally large random subset of the reference (drawn from ``seed``), so they mean the same thing for
    any N; they need N > k. The classifier FID uses the whole reference.
    """
    model = _evaluator(evaluator, dataset)
    x = as_images(images, _shape(model))
    n = len(x)
    if n <= k:
        raise ValueError(f"need more than k={k} images to evaluate, got {n}")
    ref = load_reference(reference, model, disk_cache=disk_cache, dataset=dataset)
    feats, probs = features_and_probs(x, model)
    mu, cov = gaussian_stats(feats)
    real = ref.features
    if len(real) > n:
        g = torch.Generator().manual_seed(seed)
        real = real[torch.randperm(len(real), generator=g)[:n]]
    precision, recall = precision_recall(real, feats, k=k)
    acc = None
    if labels is not None:
        y = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {y.shape}")
        cond = y != probs.shape[1]  # the null label (num_classes) requests no class
        acc = label_accuracy(probs[torch.from_numpy(cond)], y[cond]) if cond.any() else None
    return {
        "n": n,
        "accuracy": acc,
        "fid": frechet_distance(mu, cov, ref.mu, ref.cov),
        "inception_score": inception_score(probs),
        "precision": precision,
        "recall": recall,
        "reference": ref.name,
        "n_reference": len(ref.features),
    }


def load_samples(path, dataset: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and check an NPZ of samples: ``images`` uint8 (N, C, H, W), ``labels`` int (N,), ``w`` float (N,),
    all required (:func:`minicfg.sample_files.read_npz`; the null label counts as a label here).

    The image shape and the label range come from the registry record of the data set the file records, else
    ``dataset``, else mnist (a file recording another data set than ``dataset`` is refused). Any problem (not an NPZ, a
    missing key, a wrong dtype or shape) raises a one-line ValueError.
    """
    from .sample_files import read_npz

    arrays = read_npz(path, dataset, require=("images", "labels", "w"))
    return arrays["images"], arrays["labels"], arrays["w"]


def evaluate_npz(path, reference="test", evaluator=None, k: int = 3, disk_cache: bool = False,
                 dataset: str | None = None, inception_weights=None) -> list[dict]:
    """:func:`evaluate` for each value of ``w`` in a samples NPZ: one dict per w (key ``"w"`` added), by w. The
    data set is the one the file records (`minicfg sample` writes it), else ``dataset``, else mnist.

    With ``inception_weights`` (a local file, see :mod:`minicfg.inception_fid`) each dict also holds
    ``"inception_fid"``, the standard FID against the same reference, computed on the evaluator's device (cpu when
    that is neither cuda nor cpu). The weights and torch-fidelity are checked before anything is computed.
    """
    from .sample_files import npz_dataset

    dataset = npz_dataset(path, dataset)
    images, labels, w = load_samples(path, dataset)
    model = _evaluator(evaluator, dataset)
    if inception_weights is not None:
        from .inception_fid import check_weights, inception_fid, require_torch_fidelity

        require_torch_fidelity()
        check_weights(inception_weights)
        device = next(model.parameters()).device
        device = device if device.type == "cuda" else "cpu"
    rows = []
    for v in np.unique(w):
        row = {"w": float(v), **evaluate(images[w == v], labels[w == v], reference=reference, evaluator=model, k=k,
                                         disk_cache=disk_cache, dataset=dataset)}
        if inception_weights is not None:
            row["inception_fid"] = inception_fid(images[w == v], reference, dataset, inception_weights, device=device)
        rows.append(row)
    return rows


def format_table(rows: list[dict], method=None) -> str:
    """A small text table of :func:`evaluate_npz` rows. ``method``, a function of a row giving its method's name,
    adds a first column "method" (e.g. guidance variants in one table)."""
    inception = any("inception_fid" in r for r in rows)
    names = [str(method(r)) for r in rows] if method is not None else []
    first = max([len("method"), *map(len, names)]) if names else 0
    head = f"{'w':>6} {'n':>6} {'accuracy':>9} {'cFID':>8} {'IS':>6} {'precision':>9} {'recall':>7}"
    head = f"{'method':<{first}} {head}" if method is not None else head
    lines = [head + (f" {'FID (Inception)':>15}" if inception else "")]
    for i, r in enumerate(rows):
        acc = "-" if r.get("accuracy") is None else f"{r['accuracy']:.3f}"
        line = (f"{r['w']:>6g} {r['n']:>6d} {acc:>9} {r['fid']:>8.3f} {r['inception_score']:>6.2f} "
                f"{r['precision']:>9.3f} {r['recall']:>7.3f}")
        line = f"{names[i]:<{first}} {line}" if method is not None else line
        if inception:
            line += f" {r['inception_fid']:>15.3f}" if r.get("inception_fid") is not None else f" {'-':>15}"
        lines.append(line)
    return "\n".join(lines)


def evaluate_report(path, reference="test", evaluator=None, k: int = 3, disk_cache: bool = False,
                    dataset: str | None = None, inception_weights=None) -> str:
    """``minicfg evaluate``: :func:`evaluate_npz` of a samples file as a titled text table (with an Inception FID
    column when ``inception_weights`` is given)."""
    from .sample_files import npz_dataset

    dataset = npz_dataset(path, dataset)
    rows = evaluate_npz(path, reference=reference, evaluator=evaluator, k=k, disk_cache=disk_cache, dataset=dataset,
                        inception_weights=inception_weights)
    inception = "; FID (Inception): the standard FID, not comparable with cFID" if inception_weights else ""
    return (f"{path}: classifier metrics vs the {dataset} {reference} set (accuracy: recognised as the requested "
            f"label; cFID: lower is better{inception}; see docs/metrics.md)\n" + format_table(rows))
