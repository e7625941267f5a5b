"""Generating guided samples from a trained network: a guidance method and a sampler, both from their registries.

:func:`generate` gives each option to the guidance builder or the sampler that declares it, builds the
guided eps-callable from :data:`minicfg.guidance.GUIDANCE`, the log-SNR grid with
:func:`minicfg.schedules.sampling_lams`, draws the starting noise from a seed, and runs the sampler from
:data:`minicfg.samplers.SAMPLERS`, in batches. The CLI, the training preview, the sweep
and the notebooks share it, so a grid in a notebook and ``minicfg sample`` give the same pixels for the
same seed.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ._checks import check_labels, check_w_spec, keyword_options
from .guidance import DEFAULT_GUIDANCE, get_guidance
from .samplers import DEFAULT_SAMPLER, get_sampler
from .schedules import sampling_lams

__all__ = ["generate", "generate_grid", "class_labels"]

#: The range of images; samplers that take ``clip_x`` clip their x-prediction to it unless told otherwise.
IMAGE_RANGE = (-1.0, 1.0)


def class_labels(num_classes: int, n_per_class: int) -> torch.Tensor:
    """Labels 0,0,...,1,1,...: ``n_per_class`` of each class, class by class (a row per class in a grid)."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    return torch.arange(num_classes).repeat_interleave(n_per_class)


def _split_options(guidance: str, sampler: str, options: dict) -> tuple[dict, dict]:
    """Give each option to the guidance builder or the sampler, whichever takes it (never both)."""
    g_takes = keyword_options(get_guidance(guidance)) or []
    s_takes = keyword_options(get_sampler(sampler), ("generator", "callback")) or []
    g_opts, s_opts = {}, {}
    for key, value in options.items():
        if key in g_takes:
            g_opts[key] = value
        elif key in s_takes:
            s_opts[key] = value
        else:
            raise ValueError(
                f"option {key!r} is taken neither by guidance {guidance!r} (options: {', '.join(g_takes) or 'none'}) "
                f"nor by sampler {sampler!r} (options: {', '.join(s_takes) or 'none'})"
            )
    if "clip_x" in s_takes and "clip_x" not in s_opts:
        s_opts["clip_x"] = IMAGE_RANGE
    return g_opts, s_opts


@torch.no_grad()  # not inference_mode: classifier guidance needs autograd for its gradient
def generate(
    model,
    labels: torch.Tensor,
    w=0.0,
    *,
    n_steps: int = 50,
    sampler: str = DEFAULT_SAMPLER,
    guidance: str = DEFAULT_GUIDANCE,
    seed: int = 0,
    noise: torch.Tensor | None = None,
    batch_size: int = 500,
    lam_min: float = -20.0,
    lam_max: float = 20.0,
    progress: bool = False,
    callback=None,
    **options,
) -> torch.Tensor:
    """Sample images for ``labels`` with guidance of strength ``w`` (paper Alg. 2).

    ``guidance`` names an entry of :data:`minicfg.guidance.GUIDANCE` (by default classifier-free
    guidance, paper Eq. 6; classifier guidance by the gradient of a noisy classifier, Eq. 4, is another)
    and ``sampler`` one of :data:`minicfg.samplers.SAMPLERS` (by default the paper's ancestral sampler).
    ``options`` go to whichever of the two takes them, e.g. ``classifier=`` and ``base=`` for classifier
    guidance, ``v=`` and ``clip_x=`` for the ancestral sampler; samplers that take ``clip_x`` clip the
    x-prediction to [-1, 1] unless given ``clip_x=None``. ``w`` is a number, a (N,) tensor, or a function
    of lam. The starting noise is drawn from ``seed`` (or given as ``noise``), so the same seed gives the
    same starting noise for every ``w``; the sampler's own noise comes from ``seed + 1 +`` the index of
    the batch's first sample. ``callback(step, lam, z, x_pred)`` is passed to the sampler. Returns images
    in [-1, 1] of shape (N, C, H, W).
    """
    g_opts, s_opts = _split_options(guidance, sampler, options)
    config = model.config
    check_labels(labels, config.num_classes, allow_null=True)
    check_w_spec(w)
    n = labels.shape[0]
    device = next(model.parameters()).device
    shape = (n, config.image_channels, config.image_size, config.image_size)
    if noise is None:
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
    w_all = torch.as_tensor(w, dtype=torch.float32).expand(n) if torch.is_tensor(w) else None
    lams = sampling_lams(n_steps, lam_min, lam_max)
    build, run = get_guidance(guidance), get_sampler(sampler)
    out = []
    with tqdm(total=n_steps * -(-n // batch_size), disable=not progress, desc=sampler, leave=False) as bar:

        def step_done(step, lam, z, x_pred):
            bar.update()
            if callback is not None:
                callback(step, lam, z, x_pred)

        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            y = labels[sl].to(device)
            eps_fn = build(model, y, w_all[sl].to(device) if w_all is not None else w, **g_opts)
            g = torch.Generator(device=device).manual_seed(seed + 1 + start)
            x = run(eps_fn, noise[sl].to(device), lams, generator=g, callback=step_done, **s_opts)
            out.append(x.cpu())
    return torch.cat(out)


def generate_grid(model, ws, n_per_class: int = 8, seed: int = 0, **kwargs) -> dict[float, torch.Tensor]:
    """Samples for each ``w`` in ``ws`` from the same starting noise: {w: images}, rows class by class."""
    labels = class_labels(model.config.num_classes, n_per_class)
    return {float(w): generate(model, labels, w, seed=seed, **kwargs) for w in ws}
