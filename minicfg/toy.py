"""A Gaussian-mixture toy whose every score is exact (Ho & Salimans 2022, Sec. 3, Fig. 2).

Each class ``k`` is a Gaussian ``N(mu_k, Sigma_k)`` with prior weight ``pi_k``. Because
``z_lam = alpha x + sigma eps`` (paper Eq. 1) adds independent Gaussian noise, the class-``k`` marginal at
every log-SNR stays Gaussian, ``p(z_lam | k) = N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)``, and the
unconditional marginal is the mixture of these. So the conditional and unconditional eps
(``eps = -sigma grad_z log p(z_lam)``, paper Sec. 2), the classifier ``p(c | z_lam)`` and its gradient are
all available in closed form, with no network and no training. Plugged into the samplers (and into
:mod:`minicfg.guidance`) they show what the samplers and guidance do when the model is perfect: the
three-Gaussian picture of the paper's Fig. 2.

Tensors are ``(B, D)``; ``lam`` is a number, a 0-d tensor or a ``(B,)`` tensor (``None`` or ``+inf``
means the data itself: ``alpha = 1``, ``sigma = 0``). Labels are ints ``(B,)`` in ``[0, K]``, the index
``K`` being the null label (unconditional), as in :mod:`minicfg.guidance`. Device and dtype come from
``z``; float64 is recommended for checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import check_labels, check_w
from .diffusion import expand_lam
from .guidance_formulas import cfg_eps_fn as _guidance_cfg_eps_fn
from .guidance_formulas import classifier_guided_eps
from .schedules import alpha_sigma

__all__ = [
    "GaussianMixture",
    "three_gaussians",
    "eps_fn",
    "cfg_eps_fn",
    "classifier_eps_fn",
    "class_stats",
]


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """A mixture of ``K`` Gaussians in ``D`` dimensions, one component per class (paper Fig. 2).

    Args:
        means: (K, D) class means ``mu_k``.
        covs: (K, D, D) symmetric positive-definite class covariances ``Sigma_k``.
        weights: (K,) class probabilities ``pi_k`` (positive, summing to 1).

    Calling the mixture, ``mixture(z, lam, labels)``, returns the exact eps with the model signature
    ``model(z, lam, labels)`` that :func:`minicfg.guidance.cfg_eps_fn` expects (null label ``K``).
    """

    means: torch.Tensor
    covs: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self):
        means, covs, weights = (torch.as_tensor(t) for t in (self.means, self.covs, self.weights))
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        k, d = means.shape
        if tuple(covs.shape) != (k, d, d):
            raise ValueError(f"covs must have shape (K, D, D) = ({k}, {d}, {d}), got {tuple(covs.shape)}")
        if tuple(weights.shape) != (k,):
            raise ValueError(f"weights must have shape (K,) = ({k},), got {tuple(weights.shape)}")
        if not bool((weights > 0).all()) or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must be positive and sum to 1, got {weights.tolist()}")
        if not torch.allclose(covs, covs.mT):
            raise ValueError("covs must be symmetric")
        _, info = torch.linalg.cholesky_ex(covs.double())
        if bool((info != 0).any()):
            raise ValueError("covs must be positive definite")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covs", covs)
        object.__setattr__(self, "weights", weights)

    # ----------------------------------------------------------------------------------- structure
    @property
    def num_classes(self) -> int:
        """K, the number of classes; ``K`` is also the null label."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """D, the data dimension."""
        return self.means.shape[1]

    def mean(self) -> torch.Tensor:
        """Mean of the data mixture, ``sum_k pi_k mu_k`` (D,)."""
        return self.weights @ self.means

    def cov(self) -> torch.Tensor:
        """Covariance of the data mixture, ``sum_k pi_k (Sigma_k + mu_k mu_k^T) - m m^T`` (D, D)."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :])
        return second - torch.outer(m, m)

    def diffused(self, lam) -> GaussianMixture:
        """The marginal at one log-SNR as a mixture: means ``alpha mu_k``, covs ``alpha^2 Sigma_k + sigma^2 I``."""
        if lam is not None and torch.as_tensor(lam).ndim != 0:
            raise ValueError(f"diffused takes one log-SNR, got lam of shape {tuple(torch.as_tensor(lam).shape)}")
        means, covs = self._moments(self._lam(lam, self.means), self.means)
        return GaussianMixture(means, covs, self.weights)

    # ----------------------------------------------------------------------------------- internals
    def _lam(self, lam, ref: torch.Tensor):
        """``lam`` as a tensor of shape () or (B,) on ``ref``'s device/dtype; None for the data level."""
        if lam is None:
            return None
        lam = torch.as_tensor(lam, dtype=ref.dtype, device=ref.device)
        if lam.ndim == 1 and lam.numel() > 0 and bool((lam == lam[0]).all()):
            lam = lam[0]  # one noise level for the whole batch: factorise each covariance once
        if lam.ndim == 0:
            return None if math.isinf(float(lam)) and float(lam) > 0 else lam
        if lam.ndim != 1 or (ref.ndim == 2 and lam.shape[0] != ref.shape[0]):
            raise ValueError(f"lam must be a number or have shape ({ref.shape[0]},), got {tuple(lam.shape)}")
        return lam

    def _moments(self, lam, ref: torch.Tensor):
        """Class means (..., K, D) and covariances (..., K, D, D) of ``z_lam`` (data moments if lam is None)."""
        means = self.means.to(device=ref.device, dtype=ref.dtype)
        covs = self.covs.to(device=ref.device, dtype=ref.dtype)
        if lam is None:
            return means, covs
        alpha, sigma = alpha_sigma(lam)
        eye = torch.eye(self.dim, device=ref.device, dtype=ref.dtype)
        a, s = alpha[..., None, None], sigma[..., None, None]
        return a * means, a[..., None] ** 2 * covs + s[..., None] ** 2 * eye

    def _check_z(self, z: torch.Tensor) -> None:
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must have shape (B, {self.dim}), got {tuple(z.shape)}")

    def _labels(self, label, z: torch.Tensor, allow_null: bool):
        if label is None:
            return None
        label = torch.as_tensor(label, device=z.device)
        if label.ndim == 0:
            label = label.expand(z.shape[0])
        if tuple(label.shape) != (z.shape[0],):
            raise ValueError(f"labels must have shape ({z.shape[0]},), got {tuple(label.shape)}")
        check_labels(label, self.num_classes, allow_null=allow_null)
        return label

    def _components(self, z: torch.Tensor, lam):
        """Per-class ``log pi_k + log p(z_lam | k)`` (B, K) and scores ``grad_z log p(z_lam | k)`` (B, K, D)."""
        self._check_z(z)
        means, covs = self._moments(self._lam(lam, z), z)
        chol = torch.linalg.cholesky(covs)
        prec = torch.cholesky_inverse(chol)  # C^-1, (..., K, D, D): factorised once per noise level
        diff = z[:, None, :] - means  # (B, K, D)
        prec_diff = torch.einsum("...ij,...j->...i", prec, diff)  # C^-1 (z - m)
        maha = (diff * prec_diff).sum(-1)
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        log_joint = -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))
        log_joint = log_joint + torch.log(self.weights.to(device=z.device, dtype=z.dtype))
        score = -prec_diff
        return log_joint, score

    @staticmethod
    def _pick(per_class: torch.Tensor, uncond: torch.Tensor, label):
        """Rows of ``per_class`` (B, K, ...) at ``label``; the unconditional value where label is None/null."""
        if label is None:
            return uncond
        k = per_class.shape[1]
        rows = torch.arange(per_class.shape[0], device=per_class.device)
        picked = per_class[rows, label.clamp(max=k - 1)]
        null = (label == k).reshape((-1,) + (1,) * (picked.ndim - 1))
        return torch.where(null, uncond, picked)

    # ----------------------------------------------------------------------------------- densities
    def log_prob(self, z: torch.Tensor, lam=None, label=None) -> torch.Tensor:
        """Exact ``log p(z_lam | c)`` for ``label`` (B,), or ``log p(z_lam)`` for None / the null label (B,).

        ``p(z_lam | k) = N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)`` and ``p(z_lam) = sum_k pi_k p(z_lam | k)``.
        ``lam=None`` (or ``+inf``) is the data density itself.
        """
        label = self._labels(label, z, allow_null=True)
        log_joint, _ = self._components(z, lam)
        log_cond = log_joint - torch.log(self.weights.to(device=z.device, dtype=z.dtype))
        return self._pick(log_cond, torch.logsumexp(log_joint, dim=1), label)

    def classifier_log_prob(self, z: torch.Tensor, lam=None) -> torch.Tensor:
        """Exact ``log p(c | z_lam)`` for every class, shape (B, K): Bayes' rule on the marginals."""
        log_joint, _ = self._components(z, lam)
        return torch.log_softmax(log_joint, dim=1)

    def score(self, z: torch.Tensor, lam, label=None) -> torch.Tensor:
        """Exact ``grad_z log p(z_lam | c)`` (or of ``log p(z_lam)`` for None / null), closed form (B, D).

        Class ``k``: ``-(alpha^2 Sigma_k + sigma^2 I)^-1 (z - alpha mu_k)``; unconditional: the
        responsibility-weighted sum ``sum_k p(k | z_lam) grad log p(z_lam | k)``.
        """
        label = self._labels(label, z, allow_null=True)
        log_joint, score = self._components(z, lam)
        resp = torch.softmax(log_joint, dim=1)
        return self._pick(score, torch.einsum("bk,bkd->bd", resp, score), label)

    def eps(self, z: torch.Tensor, lam, label=None) -> torch.Tensor:
        """Exact eps, ``-sigma grad_z log p(z_lam | c)`` (paper Sec. 2), conditional or unconditional (B, D).

        ``label``: None or the null index ``K`` for the unconditional eps, else class ints (B,) (or one int).
        """
        if lam is None:
            raise ValueError("eps needs a finite log-SNR lam (sigma > 0)")
        _, sigma = alpha_sigma(expand_lam(lam, z))
        return -sigma * self.score(z, lam, label)

    def __call__(self, z: torch.Tensor, lam, labels) -> torch.Tensor:
        """The model interface ``model(z, lam, labels) -> eps`` of :func:`minicfg.guidance.cfg_eps_fn`."""
        return self.eps(z, lam, labels)

    def classifier_grad(self, z: torch.Tensor, lam, label) -> torch.Tensor:
        """Exact ``grad_z log p(c | z_lam)`` (B, D), closed form: ``grad log p(z|c) - grad log p(z)``.

        This is the gradient classifier guidance adds (paper Eq. 4); ``label`` must be a real class.
        """
        label = self._labels(label, z, allow_null=False)
        log_joint, score = self._components(z, lam)
        resp = torch.softmax(log_joint, dim=1)
        rows = torch.arange(z.shape[0], device=z.device)
        return score[rows, label] - torch.einsum("bk,bkd->bd", resp, score)

    def tilted_log_density(self, x: torch.Tensor, label, w, lam=None) -> torch.Tensor:
        """Unnormalised ``log p(x | c) + w log p(c | x)`` (B,), the density guidance aims at (paper Sec. 3).

        At the data level by default (``lam=None``: ``alpha = 1``, ``sigma = 0``, the data mixture itself).
        At a finite ``lam`` it is ``log p(z_lam | c) + w log p(c | z_lam)``, whose score times ``-sigma`` is
        exactly the guided eps of Eq. 6 at that ``lam``: guidance tilts every noise level separately.
        """
        check_w(w)
        label = self._labels(label, x, allow_null=False)
        log_cond = self.log_prob(x, lam, label)
        log_cls = self.classifier_log_prob(x, lam).gather(1, label[:, None]).squeeze(1)
        return log_cond + w * log_cls

    def tilted_grid(self, label: int, w, lam=None, extent: float | None = None, n_grid: int = 201):
        """The normalised tilted density ``p(z|c) p(c|z)^w / Z`` on a square grid (2-D mixtures only).

        Args:
            label: the class ``c``.
            w: guidance strength.
            lam: log-SNR; None is the data level (the density of the paper's Fig. 2).
            extent: the grid covers ``[-extent, extent]^2``; by default 6 standard deviations beyond
                every class mean of the marginal at ``lam``.
            n_grid: points per axis.
        Returns:
            ``(coords (n_grid,), density (n_grid, n_grid))`` with ``density[i, j]`` at
            ``(x, y) = (coords[j], coords[i])`` (the layout ``plt.contour(coords, coords, density)`` wants),
            normalised so that ``density.sum() * cell_area == 1``.
        """
        if self.dim != 2:
            raise ValueError(f"tilted_grid works on a 2-D grid; this mixture has D={self.dim}")
        dtype = self.means.dtype if self.means.is_floating_point() else torch.float64
        if extent is None:
            a, s = (1.0, 0.0) if lam is None else (float(t) for t in alpha_sigma(torch.tensor(float(lam))))
            spread = float(torch.sqrt(torch.diagonal(self.covs, dim1=-2, dim2=-1).max()))
            extent = a * (float(self.means.abs().max()) + 6 * spread) + 6 * s
        coords = torch.linspace(-extent, extent, n_grid, dtype=dtype, device=self.means.device)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
        logd = self.tilted_log_density(pts, label, w, lam=lam)
        cell = float(coords[1] - coords[0]) ** 2
        density = torch.softmax(logd, dim=0) / cell
        return coords, density.reshape(n_grid, n_grid)

    def tilted_moments(self, label: int, w, lam=None, extent: float | None = None, n_grid: int = 401):
        """Mean (2,) and covariance (2, 2) of the normalised tilted density ``p(z|c) p(c|z)^w`` at ``lam``.

        Quadrature on the grid of :meth:`tilted_grid` (2-D mixtures only); ``lam=None`` is the data level.
        """
        coords, density = self.tilted_grid(label, w, lam=lam, extent=extent, n_grid=n_grid)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
        p = density.reshape(-1) / density.sum()
        mean = p @ pts
        centred = pts - mean
        return mean, (centred * p[:, None]).T @ centred

    def component_moments(self, x: torch.Tensor):
        """Each component's weight (K,), mean (K, D) and covariance (K, D, D), estimated from samples ``x``.

        Uses the exact data-level responsibilities ``r_k(x) = p(k | x)``: for ``x`` drawn from the mixture,
        ``E[r_k] = pi_k``, ``E[r_k x] = pi_k mu_k`` and ``E[r_k (x - mu_k)(x - mu_k)^T] = pi_k Sigma_k``, however
        much the components overlap, so these sample averages check a sampler without assigning points.
        """
        r = self.classifier_log_prob(x).exp()  # (B, K)
        mass = r.sum(0)
        means = (r.T @ x) / mass[:, None]
        centred = x[:, None, :] - means  # (B, K, D)
        covs = torch.einsum("bk,bki,bkj->kij", r, centred, centred) / mass[:, None, None]
        return r.mean(0), means, covs

    # ----------------------------------------------------------------------------------- sampling
    def sample(self, n: int, label=None, generator: torch.Generator | None = None):
        """Draw ``n`` data points and their classes: ``(x (n, D), labels (n,))``.

        ``label=None`` draws classes from the weights; an int or an (n,) tensor fixes them.
        """
        if label is None:
            labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            labels = torch.as_tensor(label, device=self.means.device).expand(n).clone()
            check_labels(labels, self.num_classes, allow_null=False)
        labels = labels.to(device=self.means.device, dtype=torch.long)
        noise = torch.randn((n, self.dim), generator=generator, dtype=self.means.dtype, device=self.means.device)
        chol = torch.linalg.cholesky(self.covs)[labels]
        x = self.means[labels] + (chol @ noise[:, :, None]).squeeze(-1)
        return x, labels


def three_gaussians(
    radius: float = 2.0,
    var: float | tuple[float, float, float] = 1.0,
    weights: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3),
    means=None,
    covs=None,
    dtype: torch.dtype = torch.float64,
) -> GaussianMixture:
    """Three classes in 2-D, the toy of the paper's Fig. 2.

    By default the means sit on a triangle of ``radius`` 2 (angles 90, 210, 330 degrees) with isotropic
    unit covariances: neighbouring classes overlap moderately (means 3.5 standard deviations apart), so
    guidance visibly pulls them apart. ``var`` (one value, or one per class), ``weights``, or explicit
    ``means`` (3, 2) and ``covs`` (3, 2, 2) change the picture.
    """
    if means is None:
        angles = torch.tensor([90.0, 210.0, 330.0], dtype=torch.float64) * math.pi / 180
        means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    if covs is None:
        var_t = torch.as_tensor(var, dtype=torch.float64).expand(3)
        covs = var_t[:, None, None] * torch.eye(2, dtype=torch.float64)
    return GaussianMixture(
        torch.as_tensor(means).to(dtype),
        torch.as_tensor(covs).to(dtype),
        torch.as_tensor(weights, dtype=torch.float64).to(dtype),
    )


# --------------------------------------------------------------------------------------- eps-callables
def eps_fn(mixture: GaussianMixture, label=None):
    """``eps_fn(z, lam)`` for the samplers: the exact conditional eps (``label``) or unconditional (None)."""

    def fn(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return mixture.eps(z, lam, label)

    return fn


def cfg_eps_fn(mixture: GaussianMixture, labels: torch.Tensor, w):
    """Classifier-free guidance (paper Eq. 6) with the exact conditional and unconditional eps.

    This is :func:`minicfg.guidance.cfg_eps_fn` with the mixture as the "model", so the toy runs
    exactly the code path a trained network does: ``eps~ = (1 + w) eps(z, c) - w eps(z)``.
    """
    return _guidance_cfg_eps_fn(mixture, labels, w, mixture.num_classes)


def classifier_eps_fn(mixture: GaussianMixture, labels: torch.Tensor, w, base: str = "uncond"):
    """Classifier guidance (paper Eq. 4) with the exact classifier gradient ``grad_z log p(c | z_lam)``.

    ``eps~ = eps_base - w sigma grad log p(c | z_lam)``. With ``base="cond"`` this is the paper's Eq. 4
    (a conditional diffusion model guided by the classifier); with ``base="uncond"`` the base is the
    unconditional model. Because ``p(z|c) p(c|z)^w`` is proportional to ``p(z) p(c|z)^(w+1)`` (paper
    Sec. 3.1), with exact scores ``base="uncond"`` at ``w + 1`` equals ``base="cond"`` at ``w``, and both
    equal classifier-free guidance (Eq. 6) at ``w``.
    """
    if base not in ("uncond", "cond"):
        raise ValueError(f"base must be 'uncond' or 'cond', got {base!r}")
    check_w(w)

    def fn(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        eps = mixture.eps(z, lam, labels if base == "cond" else None)
        grad = mixture.classifier_grad(z, lam, labels)
        _, sigma = alpha_sigma(expand_lam(lam, z))
        return classifier_guided_eps(eps, grad, sigma, w)

    return fn


# --------------------------------------------------------------------------------------- teaching tools
def class_stats(mixture: GaussianMixture, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """How samples ``x`` (B, D) of classes ``labels`` (B,) sit relative to their own class, per class (K,).

    Returns a dict of (K,) tensors:
      ``spread``: RMS distance of a class's samples from their own sample mean;
      ``shift``: distance of that sample mean from the class mean ``mu_c``;
      ``dist``: RMS distance of the samples from ``mu_c``;
      ``own_nearest``: fraction of samples closer to ``mu_c`` than to any other class mean;
      ``p_class``: mean of the exact data-level classifier ``p(c | x)`` over the samples.
    """
    means = mixture.means.to(device=x.device, dtype=x.dtype)
    nearest = torch.cdist(x, means).argmin(dim=1)
    p_class = mixture.classifier_log_prob(x).exp().gather(1, labels[:, None]).squeeze(1)
    out = {
        key: torch.full((mixture.num_classes,), float("nan"), dtype=x.dtype)
        for key in ("spread", "shift", "dist", "own_nearest", "p_class")
    }
    for k in range(mixture.num_classes):
        sel = labels == k
        if not bool(sel.any()):
            continue
        xk = x[sel]
        m = xk.mean(0)
        out["spread"][k] = (xk - m).pow(2).sum(1).mean().sqrt()
        out["shift"][k] = (m - means[k]).norm()
        out["dist"][k] = (xk - means[k]).pow(2).sum(1).mean().sqrt()
        out["own_nearest"][k] = (nearest[sel] == k).to(x.dtype).mean()
        out["p_class"][k] = p_class[sel].mean()
    return out
