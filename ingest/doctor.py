"""``cdr doctor``: check what is in use, without changing anything, and say what is wrong.

:func:`diagnose` yields one :class:`CheckResult` per check, as each finishes: the configuration file, the
catalog database (its URL with the password masked; reachable; schema at the newest revision), the staging
folder (writable, free space), every carrier's format (it exists and compiles), every source (each
collector's ``check()``: a drop folder or Maildir exists, is writable and its done/ is safe; a remote server
is connected to, logged in to and each configured directory listed; an IMAP folder selected; a billing
feed's host reached), and the SMTP listener (its port can be bound, its TLS files load).

Nothing is changed anywhere: no database or folder is created, no migration is run, nothing is fetched,
moved or recorded in the catalog, and no billing feed is queried. Every detail is one line and never shows
a secret (a database password is masked; the collectors' errors never carry one).
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

# Less free space than this in the staging folder fails its check: incoming files would soon be refused.
LOW_SPACE_BYTES = 1 << 30
# How long a PostgreSQL connection attempt may take before the database counts as unreachable.
DATABASE_CONNECT_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class CheckResult:
    """One check: what was checked (``check``: "database", "source hero-sftp /cdr/daily"), whether it passed,
    and a one-line ``detail`` saying what was found (or why it failed)."""

    check: str
    ok: bool
    detail: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", " ".join(str(self.detail).split()))

    def view(self) -> dict[str, Any]:
        """The plain shape ``cdr doctor --json`` prints: {check, ok, detail}."""
        return asdict(self)


def diagnose(load_app: Callable[[], Any]) -> Iterator[CheckResult]:
    """Every check, in order, each yielded as soon as it is done. ``load_app`` reads the configuration (an
    ``ingest.app.App``); if that fails, the one failed "config" check is all there is to report."""
    from .errors import CdrError

    try:
        app = load_app()
    except CdrError as exc:
        yield CheckResult("config", False, str(exc))
        return
    config = app.config
    yield check_config(config)
    yield check_database(config)
    yield check_staging(config.staging_dir)
    yield from check_carriers(config)
    yield from check_sources(app)
    if config.smtp is not None:
        yield check_smtp(config.smtp)


def check_config(config) -> CheckResult:
    if config.path is None:
        return CheckResult("config", False, "no configuration file found: running on the built-in defaults "
                                            "(no carriers' own settings, no sources)")
    return CheckResult("config", True, f"{Path(config.path).resolve()} ({_count(len(config.carriers), 'carrier')}, "
                                       f"{_count(len(config.sources), 'source')})")


# -- the catalog database ----------------------------------------------------------------------------------


def check_database(config) -> CheckResult:
    """The catalog database (its URL, the password masked, and where it was set) is reachable and its schema
    at the newest revision. Nothing is created or migrated: a SQLite file not made yet passes when the first
    command that uses it could make it."""
    from .catalog.db import Catalog, DatabaseUrlError, describe_url, parse_database_url, sqlite_file
    from .errors import DatabaseBusy

    url = config.database_url
    try:
        parsed = parse_database_url(url)
    except DatabaseUrlError as exc:
        return CheckResult("database", False, f"{config.database_url_origin}: {exc}")
    shown = f"{describe_url(url)} ({config.database_url_origin})"
    path = sqlite_file(parsed)
    if parsed.get_backend_name() == "sqlite" and path is None:
        return CheckResult("database", False, f"{shown}: an in-memory database keeps nothing: give a file")
    if path is not None and not path.exists():
        problem = folder_problem(path.parent, may_create=config.create_database_folder)
        if problem is not None:
            return CheckResult("database", False, f"{shown}: cannot be created: {problem}")
        return CheckResult("database", True, f"{shown}: not created yet: the first command that uses it makes it, "
                                             "with the schema")
    if path is None and "connect_timeout" not in parsed.query:
        url = parsed.update_query_dict({"connect_timeout": str(DATABASE_CONNECT_TIMEOUT_SECONDS)}) \
            .render_as_string(hide_password=False)
    catalog = None
    try:
        catalog = Catalog(url, migrate=False)
        revision = catalog.current_revision()
    except DatabaseBusy as exc:  # the driver's own words, not our wrapping of them
        return CheckResult("database", False, f"{shown}: unreachable: {_reason(exc.__cause__ or exc)}")
    except Exception as exc:  # noqa: BLE001 - whatever stops us reaching it, in one line
        return CheckResult("database", False, f"{shown}: unreachable: {_reason(exc)}")
    finally:
        if catalog is not None:
            catalog.dispose()
    ok, state = _schema_state(revision)
    return CheckResult("database", ok, f"{shown}: reachable; {state}")


def _schema_state(revision: str | None) -> tuple[bool, str]:
    from alembic.script import ScriptDirectory

    from .catalog.db import HEAD_REVISION, MIGRATIONS

    if revision == HEAD_REVISION:
        return True, f"schema at head ({HEAD_REVISION})"
    if revision is None:
        return True, "empty: the schema is created by the first command that uses it"
    script = ScriptDirectory(str(MIGRATIONS))
    try:
        pending = list(script.iterate_revisions(HEAD_REVISION, revision))
    except Exception:  # noqa: BLE001 - alembic cannot place it: a revision this version does not know
        return False, (f"schema at revision {revision}, unknown to this cdr-ingest (head {HEAD_REVISION}): "
                       "a newer version wrote it")
    return False, (f"schema behind, {_count(len(pending), 'migration')} pending ({revision} -> {HEAD_REVISION}); "
                   "the next other cdr command applies them")


# -- folders ---------------------------------------------------------------------------------------------


def check_staging(staging_dir: Path) -> CheckResult:
    """The staging folder (and its blobs/ and tmp/) exists or can be made, is writable, and has room."""
    root = Path(staging_dir).absolute()
    for folder in (root, root / "blobs", root / "tmp"):
        problem = folder_problem(folder, may_create=True)
        if problem is not None:
            return CheckResult("staging", False, problem)
    free = shutil.disk_usage(_nearest_existing(root)).free
    state = "writable" if root.exists() else "not created yet, can be"
    detail = f"{root}: {state}; {_size(free)} free"
    if free < LOW_SPACE_BYTES:
        return CheckResult("staging", False, f"{detail}, under {_size(LOW_SPACE_BYTES)}")
    return CheckResult("staging", True, detail)


def folder_problem(folder: Path, *, may_create: bool = False) -> str | None:
    """Why files cannot be written into ``folder`` by this process (None: they can). With ``may_create``, a
    folder that does not exist yet is fine if the nearest folder above it that exists is writable (it is
    created on first use). Nothing is created or written to find out."""
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        return f"{folder} is a symlink to nothing"
    if folder.exists():
        if not folder.is_dir():
            return f"{folder} is not a folder"
        return None if _writable(folder) else f"{folder} is not writable by this user"
    if not may_create:
        return f"{folder} does not exist"
    parent = _nearest_existing(folder)
    if not parent.is_dir():
        return f"{folder} cannot be created: {parent} is not a folder"
    if not _writable(parent):
        return f"{folder} cannot be created: {parent} is not writable by this user"
    return None


def _writable(folder: Path) -> bool:
    # Effective ids and capabilities: what this process would really be allowed.
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# -- carriers, sources, SMTP -------------------------------------------------------------------------------


def check_carriers(config) -> Iterator[CheckResult]:
    """Each carrier's format exists and compiles (its fields, rules and hook, if any, load)."""
    from .errors import CdrError
    from .formats import compile_format

    for carrier in config.carriers.values():
        label = f"carrier {carrier.name}"
        try:
            compile_format(config.format_of(carrier))
        except CdrError as exc:  # ConfigError included: an unknown or broken format, a hook that does not load
            yield CheckResult(label, False, str(exc))
            continue
        origin = config.format_definitions[carrier.format].origin  # "built-in", or the file defining it
        rules = _count(len(carrier.rules), "file rule")
        yield CheckResult(label, True, f"format {carrier.format} ({origin}); {rules}")


def check_sources(app) -> Iterator[CheckResult]:
    """Each source's own check (``Collector.check``); a check that breaks unexpectedly fails that source only."""
    from .collectors import collector_for

    for spec in app.config.sources:
        collector = None
        try:
            collector = collector_for(app, spec)
            results = collector.check()
        except Exception as exc:  # noqa: BLE001 - one source's fault never hides the others' checks
            results = [CheckResult(f"source {spec.name}", False, f"{spec.kind}: {_reason(exc)}")]
        finally:
            if collector is not None:
                collector.close()
        yield from results


def check_smtp(settings) -> CheckResult:
    """The listener's address can be bound now (not while a daemon already listens there), and its TLS
    certificate and key load."""
    where = f"{settings.listen}:{settings.port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(settings.listen, settings.port,
                                                             type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the listener binds
            probe.bind(address)
    except OSError as exc:
        if getattr(exc, "errno", None) != errno.EADDRINUSE:
            return CheckResult("smtp", False, f"cannot listen on {where}: {exc.strerror or exc}")
        greeting = _smtp_greeting(settings.listen, settings.port)  # the running daemon's listener, or a stranger
        if greeting is None:
            return CheckResult("smtp", False, f"cannot listen on {where}: {exc.strerror or exc} (by something that "
                                              "does not answer as an SMTP server)")
        return CheckResult("smtp", True, f"a listener answers on {where}: {greeting}")
    tls = "no STARTTLS configured"
    if settings.tls_cert_file:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(settings.tls_cert_file,
                                                                                settings.tls_key_file)
        except ssl.SSLError as exc:  # (an OSError too: first)
            return CheckResult("smtp", False, f"TLS files {settings.tls_cert_file}, {settings.tls_key_file} do not "
                                              f"load as a certificate and its key: {exc.reason or exc}")
        except OSError as exc:
            return CheckResult("smtp", False, f"TLS files {settings.tls_cert_file}, {settings.tls_key_file}: "
                                              f"{exc.strerror or exc}")
        tls = "STARTTLS certificate and key load"
    return CheckResult("smtp", True, f"can listen on {where} for {settings.mailbox}@{settings.domain}; {tls}")


def _smtp_greeting(host: str, port: int, timeout: float = 3.0) -> str | None:
    """The 220 greeting of an SMTP server listening at ``host:port`` (one line, shortened), or None."""
    import smtplib

    try:
        with smtplib.SMTP(timeout=timeout) as client:
            code, banner = client.connect(host, port)
            client.quit()
    except (OSError, smtplib.SMTPException):
        return None
    text = banner.decode("utf-8", "replace").splitlines()[0] if banner else ""
    return f"220 {text[:80]}" if code == 220 else None


# -- wording -------------------------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    from .catalog.db import first_line
    from .errors import CdrError

    if isinstance(exc, CdrError):
        return str(exc)
    orig = getattr(exc, "orig", None)  # a database driver's own error, under SQLAlchemy's
    return first_line(orig if orig is not None else exc)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"
