"""One way to register a named choice: :class:`Registry`, the dict every registry of minicfg is.

minicfg's registries (samplers, guidance methods, data sets, output predictions, training objectives) are each a
``Registry``: a dict from a name to its entry, in registration order, so the CLI's choices, ``generate`` and the
trainer read them like any dict. :meth:`Registry.add` is the one way to put an entry in: it runs the registry's
own check of the entry and refuses a name already taken; :meth:`Registry.lookup` is the one way to read one by a
user's name: an unknown name is a ValueError that lists the registered ones. Bottom layer: imports nothing of
minicfg.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Registry"]


class Registry(dict):
    """A registry of ``kind`` (e.g. "sampler"): ``name -> entry`` in registration order.

    ``check(name, entry)``, if given, raises a ValueError naming the fix when an entry does not fit the registry
    (a sampler with another signature, a record whose name differs from the key). It is a dict, so reading
    (``in``, iteration, ``items()``, ``list(registry)``) and a test's restoring of a saved copy work as for any
    dict; new entries go through :meth:`add` (or :meth:`decorator`).
    """

    def __init__(self, kind: str, check: Callable[[str, object], None] | None = None):
        super().__init__()
        self.kind = kind
        self.check = check

    def add(self, name: str, entry):
        """Register ``entry`` under ``name`` and return it; a name already taken is a ValueError."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} is registered under a non-empty string name, got {name!r}")
        if name in self:
            raise ValueError(f"a {self.kind} named {name!r} is already registered; choose another name")
        if self.check is not None:
            self.check(name, entry)
        self[name] = entry
        return entry

    def decorator(self, name: str):
        """``@registry.decorator(name)``: :meth:`add` the decorated function under ``name`` and return it."""

        def add(fn):
            self.add(name, fn)
            return fn

        return add

    def lookup(self, name: str):
        """The entry registered as ``name``; an unknown name is a ValueError that lists the registered names."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {list(self)}")
        return self[name]

    def names(self) -> list[str]:
        """The registered names in registration order (the CLI's choices)."""
        return list(self)
