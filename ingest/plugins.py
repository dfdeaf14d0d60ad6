"""The checks of a configuration that need the plugins: each source's kind and options, by its collector.

``ingest.config`` reads and validates the file on its own and imports no collector (the collectors import
intake, which imports the application, which imports the configuration). Whoever assembles the application
calls :func:`check_sources` (or loads with :func:`load_checked_config`), so a misspelt kind or a bad option
still fails at start with the key and the reason, not at first use.
"""

from __future__ import annotations

import os

from .config import Config, load_config
from .errors import ConfigError


def check_sources(config: Config) -> None:
    """Each ``[[sources]]`` entry names a known collector kind, and that collector takes its options. Raises
    ConfigError naming ``sources[i].key``."""
    if not config.sources:  # nothing to check: the collectors (and their protocol libraries) are not imported
        return
    from .collectors import COLLECTORS

    for index, source in enumerate(config.sources):
        if source.kind not in COLLECTORS:
            known = ", ".join(sorted(COLLECTORS))
            raise ConfigError(f"sources[{index}].kind", f"unknown kind {source.kind!r} (known: {known})")
        COLLECTORS[source.kind].check_options(source, config, f"sources[{index}]")


def load_checked_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """:func:`ingest.config.load_config`, then :func:`check_sources`: the configuration an application runs on."""
    config = load_config(path, env)
    check_sources(config)
    return config


__all__ = ["check_sources", "load_checked_config"]
