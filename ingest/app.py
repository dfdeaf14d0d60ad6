"""The application context every command and collector works through: configuration, catalog, staging."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .config import Config

if TYPE_CHECKING:  # imported where first used: the catalog brings SQLAlchemy, which `cdr --help` does not need
    from .catalog import Catalog
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
        from .plugins import load_checked_config  # the sources' collectors checked too: what every command runs on

        config = load_checked_config(path)
        return cls(config=config, actor=actor or default_actor())

    @cached_property
    def catalog(self) -> Catalog:
        """The catalog the configuration names. A database URL it cannot use (unparsable, an unsupported driver,
        a SQLite file in a missing folder) is refused in one line naming where the URL was set; the folder is
        created only for the configuration file's own layout (``Config.create_database_folder``)."""
        from .catalog.db import Catalog, DatabaseUrlError

        try:
            return Catalog(self.config.database_url, create_folder=self.config.create_database_folder)
        except DatabaseUrlError as exc:
            raise DatabaseUrlError(f"{self.config.database_url_origin}: {exc}") from None

    @cached_property
    def staging(self) -> Staging:
        from .staging import Staging

        return Staging(self.config.staging_dir, self.config.limits)

    def file_loaded(self, file_id: int, actor: str | None = None) -> None:
        """What follows a file's committed load: the charges no allocation has looked at (this file's among them)
        are allocated (:func:`ingest.billing.allocation.allocate_pending`), so that a new charge file shows in
        ``cdr charges`` where each charge went; a file of call legs is joined (:func:`ingest.legs.join.join_legs`:
        its legs with the rest of their calls into xDRs). Their failure never fails the load, which is
        committed: it is logged, and the next load, ``cdr charges allocate-new``, a rematch or the billing run
        takes those charges (each allocates every charge without an allocation), the next join those legs (each
        takes every loaded file of legs not taken yet)."""
        import logging

        from sqlalchemy import select

        from .billing.allocation import allocate_pending
        from .catalog.db import first_line
        from .catalog.schema import files

        log = logging.getLogger("ingest.billing")
        try:
            allocate_pending(self, actor=actor)
        except Exception as exc:  # the load stands whatever happens here
            log.debug("allocation after loading file %s failed", file_id, exc_info=True)
            log.warning("file %s loaded; allocating its charges is postponed: %s", file_id, first_line(exc))
        try:
            with self.catalog.read() as conn:
                has_legs = conn.execute(select(files.c.first_leg_id).where(files.c.id == file_id)).scalar()
            if has_legs is not None:
                from .legs.join import join_legs

                join_legs(self, actor=actor)
        except Exception as exc:  # the load stands whatever happens here
            logging.getLogger("ingest.legs").debug("joining after loading file %s failed", file_id, exc_info=True)
            logging.getLogger("ingest.legs").warning("file %s loaded; joining its legs is postponed: %s", file_id,
                                                     first_line(exc))

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.dispose()
