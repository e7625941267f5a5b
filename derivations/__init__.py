"""Symbolic derivations (sympy only) behind every formula in ``minicfg``; each function derives and asserts.

Modules, each a set of ``derive_*`` functions that build an identity, ``assert`` it, and return the
derived sympy expressions in a dict (for tests to ``lambdify`` against ``minicfg`` and for notebooks to
display). Paper equations refer to Ho & Salimans 2022, "Classifier-Free Diffusion Guidance".

- :mod:`derivations.symbols`: the shared symbols (lam, lam', z, x, eps, w, ...).
- :mod:`derivations.forward`: alpha^2 = sigmoid(lam) (Eq. 1), the transitions q(z_lam | z_lam') (Eq. 2),
  x and eps from each other.
- :mod:`derivations.posterior`: the posterior q(z_lam' | z_lam, x) by conjugacy (Eq. 3) and the
  reverse-step variance interpolation.
- :mod:`derivations.score`: eps = -sigma grad log q(z | x), and the marginal score as -E[eps | z] / sigma.
- :mod:`derivations.schedules`: the truncated cosine log-SNR schedule, its density, and DDPM's betas as
  log-SNRs.
- :mod:`derivations.predictions`: v-prediction and EDM preconditioning as eps, their squared-error
  factors, and Min-SNR-gamma as one weighting in every space.
- :mod:`derivations.elbo`: the variational bound as a uniform integral over lam of the eps error, and for a
  Gaussian class the integrated error as its negative log-likelihood (the zero-shot classifier, ``minicfg.zero_shot``).
- :mod:`derivations.guidance`: classifier guidance (Eq. 4), the implicit classifier, CFG (Eq. 6) as
  classifier guidance, and the w + 1 shift.
- :mod:`derivations.guidance_variants`: EDM noise levels as log-SNRs (guidance intervals), rescaled CFG's eps,
  autoguidance as a sharpened density (and CFG as its special case).
- :mod:`derivations.guidance_frontier`: CFG++ in a DDIM step as CFG at a step-dependent scale, CFG-Zero*'s
  least-squares scale and zeroed first steps (DDIM as Euler on the rectified flow), APG's parallel/orthogonal split,
  the Gaussian tilted density, a mean-preserving w schedule.

This package imports neither torch nor minicfg; ``tests/test_derivations.py`` ties the two together.
"""

from . import elbo, forward, guidance, guidance_frontier, guidance_variants, posterior, predictions, schedules, score

__all__ = ["forward", "posterior", "score", "schedules", "guidance", "guidance_variants", "guidance_frontier",
           "predictions", "elbo",
           "DERIVATIONS", "run_all"]

#: every derivation, by name; each asserts its identity when called
DERIVATIONS = {
    "alpha_sigma": forward.derive_alpha_sigma,
    "transition": forward.derive_transition,
    "x_eps": forward.derive_x_eps,
    "posterior": posterior.derive_posterior,
    "reverse_variance": posterior.derive_reverse_variance,
    "conditional_score": score.derive_conditional_score,
    "marginal_score": score.derive_marginal_score,
    "cosine_schedule": schedules.derive_cosine_schedule,
    "cosine_density": schedules.derive_cosine_density,
    "ddpm_log_snr": schedules.derive_ddpm_log_snr,
    "classifier_guidance": guidance.derive_classifier_guidance,
    "implicit_classifier": guidance.derive_implicit_classifier,
    "cfg": guidance.derive_cfg,
    "guidance_shift": guidance.derive_guidance_shift,
    "v_prediction": predictions.derive_v_prediction,
    "edm_preconditioning": predictions.derive_edm_preconditioning,
    "min_snr_weight": predictions.derive_min_snr_weight,
    "ve_sigma": guidance_variants.derive_ve_sigma,
    "rescale_eps": guidance_variants.derive_rescale_eps,
    "autoguidance": guidance_variants.derive_autoguidance,
    "cfgpp_ddim": guidance_frontier.derive_cfgpp_ddim,
    "cfg_zero_scale": guidance_frontier.derive_cfg_zero_scale,
    "apg_split": guidance_frontier.derive_apg_split,
    "gaussian_tilt": guidance_frontier.derive_gaussian_tilt,
    "w_schedule": guidance_frontier.derive_w_schedule,
    "zero_velocity": guidance_frontier.derive_zero_velocity,
    "elbo_in_lam": elbo.derive_elbo_in_lam,
    "gaussian_class_error": elbo.derive_gaussian_class_error,
}


def run_all() -> dict:
    """Run every derivation (each asserts its identity); return ``{name: dict of derived expressions}``."""
    return {name: derive() for name, derive in DERIVATIONS.items()}
