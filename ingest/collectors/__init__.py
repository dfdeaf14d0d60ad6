"""Collectors: one small class per way files arrive, each against the contract in ``base``, picked from
:data:`COLLECTORS` by a source's ``kind``. Every collector hands its bytes to ``ingest.intake.receive``.

Every module in this package is imported, and every concrete collector class with a ``kind`` is
registered: a new protocol is a new module here, nothing else.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from .base import Collector, PassResult

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def _concrete(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        if getattr(sub, "kind", None) and not inspect.isabstract(sub):
            found.append(sub)
        found += _concrete(sub)
    return found


COLLECTORS: dict[str, type[Collector]] = {cls.kind: cls for cls in _concrete(Collector)}


def collector_for(app, spec, *args, **kwargs) -> Collector:
    return COLLECTORS[spec.kind](app, spec, *args, **kwargs)


def is_watched(spec) -> bool:
    """A drop folder or Maildir (run by ``ingest.watch``), not a source polled on a schedule."""
    return COLLECTORS[spec.kind].watched


__all__ = ["COLLECTORS", "Collector", "PassResult", "collector_for", "is_watched"]
