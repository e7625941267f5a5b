"""What CFG really samples: the tilted density ``p(x|c)^(1+w) p(x)^(-w)`` in 1-D, against samples (issue 31).

Guidance's eps at every log-SNR is the noise prediction of the tilted marginal ``p(z_lam|c)^(1+w) p(z_lam)^(-w)``,
but the tilted marginals at different ``lam`` are not the noised versions of one tilted data density, so a sampler
that follows them (ancestral, DDIM) need not end at the data-level tilted density (Bradley & Nakkiran 2024). On a
1-D Gaussian mixture (:mod:`minicfg.toy`, exact scores) this module makes that measurable:

- :func:`mixture_1d` builds a 1-D mixture of the toy's :class:`~minicfg.toy.GaussianMixture`;
- :func:`tilted_on_grid` normalises ``(1+w) log p_c - w log p_u`` by trapezoid quadrature on a grid and returns
  its density and CDF (:class:`GridDensity`), for any pair of 1-D log-densities (:func:`mixture_tilted` for a
  mixture's class);
- :meth:`GridDensity.wasserstein1` is the 1-D Wasserstein-1 distance of samples to it, ``integral |F_n - F| dx``,
  and :meth:`GridDensity.w1_null` its Monte Carlo floor: the mean and spread of that distance for exact draws
  (:meth:`GridDensity.sample`, inverse CDF) of the same size;
- :func:`cfg_samples` draws from CFG's samplers (:mod:`minicfg.samplers`) with the toy's exact CFG eps;
- :func:`langevin` with :func:`score_at` is a sampler that does target the tilted density: Langevin dynamics with
  the score of the same CFG eps at the final log-SNR, ``(1+w) grad log p(z|c) - w grad log p(z)``, run as a
  corrector after a CFG sampler (:func:`cfg_corrected`);
- :func:`tilted_figure` draws the density, ``p(x|c)`` and histograms of samples with their distances.

``docs/what_cfg_samples.md`` records the measurement (``bench/tilted_density.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import toy
from ._checks import check_w
from .diffusion import score_from_eps
from .samplers import DEFAULT_SAMPLER, run_sampler
from .toy import GaussianMixture

__all__ = ["mixture_1d", "GridDensity", "tilted_on_grid", "mixture_tilted", "cfg_samples", "score_at", "langevin",
           "cfg_corrected", "sample_set", "tilted_figure"]


def mixture_1d(means, stds, weights=None, dtype: torch.dtype = torch.float64) -> GaussianMixture:
    """A 1-D :class:`~minicfg.toy.GaussianMixture`: class ``k`` is ``N(means[k], stds[k]^2)``; equal weights by
    default."""
    means = torch.as_tensor(means, dtype=dtype).reshape(-1)
    stds = torch.as_tensor(stds, dtype=dtype).reshape(-1)
    if stds.shape != means.shape:
        raise ValueError(f"need one std per mean, got {means.numel()} means and {stds.numel()} stds")
    if not bool((stds > 0).all()):
        raise ValueError(f"stds must be positive, got {stds.tolist()}")
    k = means.numel()
    weights = torch.full((k,), 1.0 / k, dtype=dtype) if weights is None else torch.as_tensor(weights, dtype=dtype)
    return GaussianMixture(means[:, None], (stds**2)[:, None, None], weights)


@dataclass(frozen=True)
class GridDensity:
    """A 1-D density on an increasing grid: ``density`` integrates to 1 by the trapezoid rule, ``cdf`` is its
    cumulative trapezoid (0 at ``grid[0]``, 1 at ``grid[-1]``). All three are float64 numpy arrays."""

    grid: np.ndarray
    density: np.ndarray
    cdf: np.ndarray

    def mean_std(self) -> tuple[float, float]:
        """Mean and standard deviation by quadrature."""
        mean = float(np.trapezoid(self.grid * self.density, self.grid))
        var = float(np.trapezoid((self.grid - mean) ** 2 * self.density, self.grid))
        return mean, var**0.5

    def quantile(self, u) -> np.ndarray:
        """The inverse CDF at probabilities ``u`` in [0, 1] (linear interpolation of the CDF)."""
        u = np.asarray(u, dtype=np.float64)
        if u.size and (u.min() < 0 or u.max() > 1):
            raise ValueError("quantile probabilities must lie in [0, 1]")
        keep = np.concatenate([[True], np.diff(self.cdf) > 0])  # drop flat stretches: np.interp needs increasing x
        return np.interp(u, self.cdf[keep], self.grid[keep])

    def sample(self, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        """``n`` exact draws (up to the grid's resolution) by the inverse CDF of uniforms from ``generator``."""
        u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        return self.quantile(u)

    def wasserstein1(self, samples) -> float:
        """1-D Wasserstein-1 distance of the samples' empirical law to this density: ``integral |F_n - F| dx``.

        Exact for the density's CDF interpolated linearly between grid points, so the grid must cover every
        sample; a sample outside is a ValueError.
        """
        # float64 from the start: torch.as_tensor of a Python list would round it to float32
        x = np.sort(torch.as_tensor(samples, dtype=torch.float64).detach().cpu().reshape(-1).numpy())
        if x.size == 0:
            raise ValueError("wasserstein1 needs at least one sample")
        if not np.isfinite(x).all():
            raise ValueError("samples contain NaN or inf")
        if x[0] < self.grid[0] or x[-1] > self.grid[-1]:
            raise ValueError(f"samples span [{x[0]:.3g}, {x[-1]:.3g}], outside the grid [{self.grid[0]:.3g}, "
                             f"{self.grid[-1]:.3g}]: build the density on a wider grid (extent=...)")
        # integrate |F_n - F| exactly between the grid points and the sample points: merge both and use the
        # empirical CDF's value on each piece (it is constant there) with the linearly interpolated F
        pts = np.union1d(self.grid, x)
        f = np.interp(pts, self.grid, self.cdf)
        f_n = np.searchsorted(x, pts, side="right") / x.size  # right-continuous: value on [pts[i], pts[i+1])
        lo, hi = f[:-1] - f_n[:-1], f[1:] - f_n[:-1]  # F - F_n at both ends of each piece (F_n constant on it)
        dx = np.diff(pts)
        # integral of |linear function| over a piece, exact also where it changes sign
        same = lo * hi >= 0
        area = np.where(same, 0.5 * np.abs(lo + hi) * dx,
                        0.5 * (lo**2 + hi**2) / np.maximum(np.abs(lo) + np.abs(hi), 1e-300) * dx)
        return float(area.sum())

    def w1_null(self, n: int, repeats: int = 20, generator: torch.Generator | None = None) -> tuple[float, float]:
        """Mean and standard deviation, over ``repeats`` sets, of the W1 of ``n`` exact draws to this density.

        The mean is the floor a perfect sampler reaches at this ``n`` (W1 of an empirical law shrinks like
        ``1/sqrt(n)``, it is never 0); the standard deviation is the Monte Carlo error of one W1 at this ``n``.
        """
        if repeats < 2:
            raise ValueError(f"repeats must be at least 2 to give a spread, got {repeats}")
        values = [self.wasserstein1(self.sample(n, generator)) for _ in range(repeats)]
        return float(np.mean(values)), float(np.std(values, ddof=1))


LogDensity = Callable[[torch.Tensor], torch.Tensor]


def tilted_on_grid(log_cond: LogDensity, log_uncond: LogDensity, w, grid) -> GridDensity:
    """The tilted density ``p_c(x)^(1+w) p_u(x)^(-w) / Z`` on ``grid``, ``Z`` by trapezoid quadrature.

    Args:
        log_cond, log_uncond: functions of a float64 tensor of points ``(N,)`` returning ``log p_c`` and
            ``log p_u`` there (unnormalised is fine: constants cancel in ``Z``).
        w: the paper's guidance strength (``w = 0`` gives ``p_c`` back).
        grid: increasing 1-D points; it must reach far enough into both tails for the mass outside to be
            negligible (the tilted density can be wider than ``p_c`` where ``p_u`` is narrower).
    """
    check_w(w)
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 3 or not (np.diff(grid) > 0).all():
        raise ValueError("grid must be a 1-D increasing array of at least 3 points")
    pts = torch.from_numpy(grid)
    logd = ((1 + w) * log_cond(pts) - w * log_uncond(pts)).double().numpy()
    if not np.isfinite(logd).all():
        raise ValueError("the log-densities are not finite on the whole grid")
    unnorm = np.exp(logd - logd.max())
    if unnorm[0] > 1e-12 or unnorm[-1] > 1e-12:
        raise ValueError("the tilted density has not decayed at the ends of the grid (it is wider than the grid, "
                         "or not normalisable at this w): widen the grid")
    z = np.trapezoid(unnorm, grid)
    density = unnorm / z
    steps = 0.5 * (density[1:] + density[:-1]) * np.diff(grid)
    cdf = np.concatenate([[0.0], np.cumsum(steps)])
    return GridDensity(grid, density, cdf / cdf[-1])


def _check_1d(mixture: GaussianMixture, label) -> int:
    if mixture.dim != 1:
        raise ValueError(f"this works on 1-D mixtures; this one has D={mixture.dim} (build one with mixture_1d)")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < mixture.num_classes:
        raise ValueError(f"label must be one class, an int in [0, {mixture.num_classes - 1}], got {label!r}")
    return int(label)


def mixture_tilted(mixture: GaussianMixture, label: int, w, extent: float = 10.0, n_grid: int = 20001) -> GridDensity:
    """The data-level tilted density ``p(x|c)^(1+w) p(x)^(-w) / Z`` of a 1-D mixture's class ``label``.

    The grid spans ``[min mean - extent * max std, max mean + extent * max std]`` with ``n_grid`` points.
    """
    label = _check_1d(mixture, label)
    means = mixture.means.reshape(-1).double()
    spread = float(mixture.covs.reshape(-1).double().sqrt().max())
    grid = np.linspace(float(means.min()) - extent * spread, float(means.max()) + extent * spread, n_grid)

    def log_cond(x):
        return mixture.log_prob(x[:, None], None, torch.full((x.numel(),), label))

    def log_uncond(x):
        return mixture.log_prob(x[:, None], None, None)

    return tilted_on_grid(log_cond, log_uncond, w, grid)


def cfg_samples(mixture: GaussianMixture, label: int, w, n: int, lams: torch.Tensor, sampler: str = DEFAULT_SAMPLER,
                generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """``n`` draws ``(n,)`` of class ``label`` by classifier-free guidance with the mixture's exact eps.

    The guided eps is :func:`minicfg.toy.cfg_eps_fn` (the library's CFG with the mixture as the model), run by the
    registered sampler ``sampler`` (:func:`minicfg.samplers.run_sampler`) on the grid ``lams`` from standard
    normal noise drawn from ``generator``; ``options`` go to the sampler.
    """
    label = _check_1d(mixture, label)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    dtype = mixture.means.dtype
    z = torch.randn(n, 1, generator=generator, dtype=dtype)
    eps_fn = toy.cfg_eps_fn(mixture, torch.full((n,), label, dtype=torch.long), w)
    return run_sampler(sampler, eps_fn, z, lams, generator=generator, **options).reshape(-1)


def score_at(eps_fn, lam: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``score(z) = -eps_fn(z, lam) / sigma_lam``, the score an eps-callable implies at one log-SNR ``lam``.

    With the CFG eps at ``lam`` this is ``(1+w) grad log p(z_lam|c) - w grad log p(z_lam)``, the score of the
    tilted marginal at ``lam``; at the largest log-SNR of a sampling grid (``lam = 20``: ``sigma^2 = 2e-9``) that
    is the data-level tilted density's score up to a blur far below the Monte Carlo errors here.
    """
    if not math.isfinite(lam):
        raise ValueError(f"lam must be finite (a network has no eps at lam = inf), got {lam}")

    def score(z: torch.Tensor) -> torch.Tensor:
        lam_b = torch.full((z.shape[0],), float(lam), dtype=z.dtype, device=z.device)
        return score_from_eps(eps_fn(z, lam_b), lam_b)

    return score


def langevin(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step: float, n_steps: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Unadjusted Langevin dynamics ``x <- x + step * score(x) + sqrt(2 step) xi``, ``n_steps`` times.

    Its stationary law approaches the density whose score is ``score_fn`` as ``step -> 0`` (for a Gaussian of
    variance ``s^2`` the stationary variance is ``s^2 / (1 - step / (2 s^2))``, so ``step`` must be small
    against the narrowest variance); it forgets its start after about ``s^2 / step`` steps for the widest.
    Started from a CFG sampler's output with :func:`score_at` of the CFG eps at the final log-SNR it is the
    corrector of a predictor-corrector sampler (:func:`cfg_corrected`).
    """
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    scale = (2.0 * step) ** 0.5
    for _ in range(n_steps):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + step * score_fn(x) + scale * noise
    return x


def cfg_corrected(mixture: GaussianMixture, label: int, w, x: torch.Tensor, lam: float = 20.0, step: float = 0.01,
                  n_steps: int = 1000, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples ``x (n,)`` moved by :func:`langevin` with the score of the same CFG eps at log-SNR ``lam``.

    The corrector only needs the guided eps a sampler already has, evaluated at the final log-SNR of its grid.
    """
    label = _check_1d(mixture, label)
    x = torch.as_tensor(x, dtype=mixture.means.dtype).reshape(-1, 1)
    eps_fn = toy.cfg_eps_fn(mixture, torch.full((x.shape[0],), label, dtype=torch.long), w)
    return langevin(score_at(eps_fn, lam), x, step, n_steps, generator).reshape(-1)


def sample_set(mixture: GaussianMixture, label: int, w, n: int, lams: torch.Tensor, sampler: str, *, seed: int,
               langevin: tuple[float, int] | None = None) -> torch.Tensor:
    """One seeded set of ``n`` CFG samples of class ``label`` (:func:`cfg_samples` on the grid ``lams`` with the
    registered ``sampler``); with ``langevin=(step, n_steps)`` they are then corrected at the grid's last log-SNR
    (:func:`cfg_corrected`), drawing from the same generator. A row of the what-CFG-samples measurement."""
    g = torch.Generator().manual_seed(seed)
    x = cfg_samples(mixture, label, w, n, lams, sampler, generator=g)
    if langevin is not None:
        x = cfg_corrected(mixture, label, w, x, float(lams[-1]), langevin[0], langevin[1], g)
    return x


def tilted_figure(target: GridDensity, cond: GridDensity, samples: dict[str, np.ndarray],
                  distances: dict[str, tuple[float, float]] | None = None, w=None,
                  floor: tuple[float, float] | None = None, bins: int = 80, xlim: tuple[float, float] | None = None):
    """A matplotlib Figure: the tilted density, ``p(x|c)``, and a histogram of each sampler's samples.

    Args:
        target: the tilted density (:func:`mixture_tilted` at ``w``); cond: ``p(x|c)`` (the same at ``w = 0``).
        samples: sampler name -> 1-D samples.
        distances: sampler name -> (W1 to ``target``, its Monte Carlo error), shown in the legend.
        w: the guidance strength, for the title.
        floor: (mean, spread) of the W1 of exact draws of the same size (:meth:`GridDensity.w1_null`), in the title.
        xlim: the x range; by default where ``target``, ``cond`` or a histogram is above 1e-3 of its peak.
    Built without pyplot (like :mod:`minicfg.sweep_plots`): show it as a cell's last expression or ``savefig``.
    The legend sits to the right of the axes, off the data.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 4.4), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    if xlim is None:
        mask = (target.density > 1e-3 * target.density.max()) | (cond.density > 1e-3 * cond.density.max())
        lo, hi = float(target.grid[mask].min()), float(target.grid[mask].max())
        for x in samples.values():
            lo, hi = min(lo, float(np.quantile(x, 0.0005))), max(hi, float(np.quantile(x, 0.9995)))
        xlim = (lo, hi)
    edges = np.linspace(*xlim, bins + 1)
    top = max(target.density.max(), cond.density.max())
    for name, x in samples.items():
        label = name
        if distances and name in distances:
            d, err = distances[name]
            label = f"{name}: W1 = {d:.3f} ± {err:.3f}"
        heights, _, _ = ax.hist(np.asarray(x), bins=edges, density=True, histtype="step", linewidth=1.4, label=label)
        top = max(top, float(np.max(heights)))
    ax.plot(target.grid, target.density, "k-", linewidth=2.0, label="tilted p(x|c)^(1+w) p(x)^(-w)")
    ax.plot(cond.grid, cond.density, "k:", linewidth=1.5, label="p(x|c) (w = 0)")
    ax.set_xlim(*xlim)
    ax.set_ylim(0, 1.05 * top)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    title = "What CFG samples" + (f" at w = {w:g}" if w is not None else "") + " (exact scores, 1-D toy)"
    if floor is not None:
        title += f"\nW1 of exact draws of the same size: {floor[0]:.3f} ± {floor[1]:.3f}"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
