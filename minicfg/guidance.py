"""The guidance registry: one :class:`GuidanceMethod` record per method, and the guidance formulas re-exported.

Every guidance method is a record in :data:`GUIDANCE`: its name, its builder ``builder(model, labels, w,
**options) -> eps_fn(z, lam)`` (the keyword-only parameters are its options; ``minicfg sample`` and ``minicfg
sweep`` give each a flag) and the options that are networks with their role in the model store, loaded from a path
or the shipped file. The eps-callable a builder returns keeps the sampler contract of :mod:`minicfg.guided`: it
returns an eps or a ``Guided(eps, renoise)`` pair, and may have ``begin(lams)`` for per-run state.
:func:`build_guidance` builds one by name and rejects options it does not take.

The formulas and the builders live below this module, which imports them and records them in one place:
Eq. 6 and classifier guidance in :mod:`minicfg.guidance_formulas` (re-exported here, so ``guidance.cfg``,
``guidance.cfg_eps_fn`` ... are the same functions), the variants beyond Eq. 6 in :mod:`minicfg.guidance_variants`,
the methods of 2024-2025 (CFG++, APG, CFG-Zero*, a w schedule, independent-condition guidance) in
:mod:`minicfg.guidance_frontier`, guidance by a distilled student in :mod:`minicfg.distill`. None of those imports
this module, so there is no import cycle.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ._checks import check_options, keyword_options
from .distill import distilled
from .guidance_formulas import (
    W_MAX,
    Builder,
    EpsFn,
    cfg,
    cfg_eps_fn,
    classifier_eps_fn,
    classifier_grad,
    classifier_guidance,
    classifier_guided_eps,
    implicit_classifier_grad,
    w_from_guidance_scale,
)
from .guidance_frontier import apg, cfg_zero_star, cfgpp, independent_condition, w_schedule
from .guidance_variants import autoguidance, interval_guidance, rescale_guidance
from .registry import Registry

__all__ = [
    "W_MAX",
    "w_from_guidance_scale",
    "cfg",
    "classifier_guided_eps",
    "implicit_classifier_grad",
    "classifier_grad",
    "cfg_eps_fn",
    "classifier_eps_fn",
    "classifier_guidance",
    "GuidanceMethod",
    "GUIDANCE",
    "DEFAULT_GUIDANCE",
    "add_guidance",
    "register_guidance",
    "get_guidance",
    "get_guidance_method",
    "build_guidance",
]


@dataclass(frozen=True)
class GuidanceMethod:
    """One guidance method: ``name`` (what ``--guidance`` takes), ``builder`` (signature ``(model, labels, w,
    **options) -> eps_fn``) and ``networks``, ``{option: role}`` for the options that are networks (e.g.
    ``{"classifier": "noisy_classifier"}``): the commands load them with ``checkpoint.load_model(path,
    role=role)``, the shipped network of that role when no path is given."""

    name: str
    builder: Builder
    networks: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if list(inspect.signature(self.builder).parameters)[:3] != ["model", "labels", "w"]:
            raise ValueError(f"guidance {self.name!r} must have a builder of the signature (model, labels, w, "
                             f"**options)")
        options = keyword_options(self.builder) or []
        stray = [key for key in self.networks if key not in options]
        if stray:
            raise ValueError(f"guidance {self.name!r}: networks names {stray}, which are not keyword options of its "
                             f"builder ({options})")
        object.__setattr__(self, "networks", dict(self.networks))

    @property
    def options(self) -> list[str]:
        """The builder's keyword-only options, in order."""
        return keyword_options(self.builder) or []


def _check_method(name: str, method) -> None:
    if not isinstance(method, GuidanceMethod) or method.name != name:
        raise ValueError(f"guidance method {name!r} must be a GuidanceMethod record registered under its own name "
                         f"(add_guidance(record) or @register_guidance(name)), got {method!r}")


#: name -> :class:`GuidanceMethod`, in registration order; `minicfg sample --guidance` offers these names.
GUIDANCE = Registry("guidance method", _check_method)
#: The guidance method used when none is named.
DEFAULT_GUIDANCE = "cfg"


def add_guidance(method: GuidanceMethod) -> GuidanceMethod:
    """Add a guidance method's record to :data:`GUIDANCE` under its name."""
    return GUIDANCE.add(method.name, method)


def register_guidance(name: str, networks: Mapping[str, str] | None = None):
    """Decorator: record the builder as the guidance method ``name`` (``networks`` as in :class:`GuidanceMethod`)."""

    def add(fn: Builder) -> Builder:
        add_guidance(GuidanceMethod(name, fn, dict(networks or {})))
        return fn

    return add


def get_guidance_method(name: str) -> GuidanceMethod:
    """The record of the guidance method ``name``; a ValueError lists the registered names."""
    return GUIDANCE.lookup(name)


def get_guidance(name: str) -> Builder:
    """The builder of the guidance method ``name``; a ValueError lists the registered names."""
    return GUIDANCE.lookup(name).builder


def build_guidance(name: str, model, labels: torch.Tensor, w, **options) -> EpsFn:
    """``eps_fn(z, lam)`` of the guidance method ``name``; options it does not take are a ValueError."""
    fn = get_guidance(name)
    check_options("guidance", name, fn, options)
    return fn(model, labels, w, **options)


# the methods, in the order the CLI lists them
add_guidance(GuidanceMethod("cfg", cfg_eps_fn))
add_guidance(GuidanceMethod("classifier", classifier_guidance, networks={"classifier": "noisy_classifier"}))
add_guidance(GuidanceMethod("interval", interval_guidance))
add_guidance(GuidanceMethod("rescale", rescale_guidance))
add_guidance(GuidanceMethod("autoguidance", autoguidance, networks={"weak": "weak_model"}))
add_guidance(GuidanceMethod("cfgpp", cfgpp))
add_guidance(GuidanceMethod("apg", apg))
add_guidance(GuidanceMethod("cfg_zero_star", cfg_zero_star))
add_guidance(GuidanceMethod("w_schedule", w_schedule))
add_guidance(GuidanceMethod("icg", independent_condition))
add_guidance(GuidanceMethod("distilled", distilled, networks={"student": "distilled_model"}))
