"""Declarative file formats: a ``[formats.<name>]`` table (docs/formats.md) says how a carrier's file is laid
out and how its columns map onto the call and charge layouts (ingest.layouts); the engine reads any file so
described into record batches of those layouts."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Config
    from .engine import FileParser, Format, compile_format
    from .read import Source
    from .spec import FieldSpec, FormatSpec, builtin_format_tables, parse_format

# Imported on first use (PEP 562): the configuration reads ``ingest.formats.spec`` (no Arrow) when it loads, and
# importing this package must not bring the engine's pyarrow with it.
_LAZY = {"FileParser": "engine", "Format": "engine", "compile_format": "engine", "Source": "read",
         "FieldSpec": "spec", "FormatSpec": "spec", "builtin_format_tables": "spec", "parse_format": "spec"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parser_for(config: "Config", carrier: str) -> "FileParser":
    """A parser of ``carrier``'s files, on its format compiled once per configuration: ``config.parser_for``."""
    return config.parser_for(carrier)


__all__ = ["FieldSpec", "FileParser", "Format", "FormatSpec", "Source", "builtin_format_tables", "compile_format",
           "parse_format", "parser_for"]
