"""Collectors: one small class per way files arrive, each against the contract in ``base``, picked from
:data:`COLLECTORS` by a source's ``kind``. Every collector hands its bytes to ``ingest.intake.receive``."""

from __future__ import annotations

from .base import Collector, PassResult
from .dropfolder import DropFolder

COLLECTORS: dict[str, type[Collector]] = {cls.kind: cls for cls in (DropFolder,)}


def collector_for(app, spec) -> Collector:
    return COLLECTORS[spec.kind](app, spec)


__all__ = ["COLLECTORS", "Collector", "PassResult", "collector_for"]
