"""Per-carrier parsers, registered by the name a carrier's ``parser`` key uses in the configuration."""

from __future__ import annotations

from .base import CANONICAL, CANONICAL_NAMES, CANONICAL_SCHEMA, Parser, Source
from .billingfeed import HeroParser, TechConnectionsParser

PARSERS: dict[str, type[Parser]] = {cls.name: cls for cls in (HeroParser, TechConnectionsParser)}


def parser_for(carrier) -> Parser:
    """A parser instance for a configured carrier (``ingest.config.CarrierSpec``)."""
    return PARSERS[carrier.parser](carrier.name, carrier.options)


__all__ = ["CANONICAL", "CANONICAL_NAMES", "CANONICAL_SCHEMA", "PARSERS", "Parser", "Source", "parser_for"]
