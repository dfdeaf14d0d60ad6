"""The application context every command and collector works through: configuration, catalog, staging."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from functools import cached_property

from .catalog import Catalog
from .config import Config, load_config
from .staging import Staging


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container with an unknown uid)
        return "unknown"


@dataclass
class App:
    config: Config
    actor: str = field(default_factory=default_actor)

    @classmethod
    def from_config(cls, path: str | None = None, actor: str | None = None) -> "App":
        config = load_config(path)
        return cls(config=config, actor=actor or default_actor())

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.config.database_url)

    @cached_property
    def staging(self) -> Staging:
        return Staging(self.config.staging_dir, self.config.limits)

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.dispose()
