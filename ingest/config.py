"""Configuration: one TOML file, overridden by environment variables, validated at start.

Where it comes from, the first found: ``--config PATH``, ``$CDR_CONFIG``, ``./cdr.toml``, ``./config/cdr.toml``,
``~/.config/cdr-ingest/cdr.toml``, ``/etc/cdr-ingest/cdr.toml`` (that folder is ``$CDR_SYSTEM_CONFIG_DIR`` when
set). None found is :class:`ConfigNotFound`, naming every place searched: no command runs on a catalog nobody
chose. Relative paths in the file (the SQLite database, staging, includes, drop folders and Maildirs, key,
known_hosts, password, CA and TLS files) are relative to the file's own folder. ``CDR_DATABASE_URL`` and
``CDR_STAGING_DIR`` override ``[database].url`` and ``[staging].dir``; relative ones there are from the working
directory.

Anything unknown or ill-typed is refused with the key and the reason, so a typo in a carrier's file rule
fails at start instead of silently ignoring that carrier's files for a month.

Record formats (``[formats.NAME]``, docs/formats.md) come from the file, the files it includes and the built-in
ones (``ingest/formats/builtin``); a table of the configuration with a built-in's name replaces it. Each carrier
names one (``format``), which must exist. The formats the configuration defines are parsed at load, so their
mistakes fail at start too; the built-in ones when first asked for (:meth:`Config.format_spec`), which keeps
loading light (no Arrow).

This module imports no collector and no parser engine at import time (``ingest.core`` holds the shared
vocabulary); the sources' collector options are checked where the application is assembled
(:mod:`ingest.plugins`).
"""

from __future__ import annotations

import glob as globmod
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The shared vocabulary lives in ingest.core; imported from here too, as before.
from .core import CADENCES, FILE_FORMATS, FILE_TYPES, FORMATS, STATUSES, Classification  # noqa: F401
from .billing.tariffs import Tariff, parse_tariffs
from .legs.settings import NetworkSettings, parse_network
from .errors import ConfigError, PermanentError

if TYPE_CHECKING:  # the engine is imported when a format is first parsed: loading a configuration stays light
    from .formats.engine import FileParser
    from .formats.spec import FormatSpec

DEFAULT_DATABASE_URL = "sqlite:///var/cdr.sqlite"
DEFAULT_STAGING_DIR = "var/staging"

# A carrier's ``parser`` (before record formats) and the built-in format it now means.
LEGACY_PARSERS = {"hero": "hero-feed", "techconnections": "techconnections-feed"}
# Carrier options the old Tech Connections parser took, now rules of the techconnections-feed format.
_MOVED_OPTIONS = ("service_call_types", "service_when_no_bparty")
BUILTIN = "built-in"  # the origin of a built-in format

_PLACEHOLDERS = {
    "year": r"(?P<year>\d{4})",
    "month": r"(?P<month>0[1-9]|1[0-2])",
    "day": r"(?P<day>0[1-9]|[12]\d|3[01])",
    "any": r"(?P<any>.*)",
}


@dataclass(frozen=True)
class FileRule:
    """Maps a file-name pattern to a file type, a cadence and optionally a billing period and format."""

    key: str
    regex: re.Pattern[str]
    file_type: str
    cadence: str
    file_format: str | None = None

    def match(self, name: str) -> Classification | None:
        m = self.regex.fullmatch(name)
        if not m:
            return None
        groups = m.groupdict()
        period = None
        if groups.get("year") and groups.get("month"):
            period = f"{groups['year']}-{groups['month']}"
        return Classification(
            file_type=self.file_type, cadence=self.cadence, billing_period=period, file_format=self.file_format
        )


@dataclass(frozen=True)
class CarrierSpec:
    name: str
    format: str  # the record format its files are read by (a key of Config.formats)
    same_name_rule: bool = False
    # The file format (csv, txt, pipe, json) of a file whose rule, source and name do not say.
    file_format: str | None = None
    # The type of a file routed to this carrier (a mail route, a source naming only the carrier) when none
    # of its file rules matches the file's name.
    default_type: str = "cdr"
    rules: tuple[FileRule, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # no carrier takes options any more; kept empty
    # ``[carriers.NAME.products]``: the carrier's product codes and the transaction type each is (allocation).
    products: dict[str, str] = field(default_factory=dict)
    # The wholesale tariff pricing what this carrier's records are expected to cost (a margin check), if any.
    wholesale_tariff: str | None = None

    def classify(self, name: str) -> Classification | None:
        """The first rule that matches ``name`` (tried without a trailing .gz/.zip too)."""
        candidates = [name]
        lowered = name.lower()
        for suffix in (".gz", ".zip"):
            if lowered.endswith(suffix):
                candidates.append(name[: -len(suffix)])
        for rule in self.rules:
            for candidate in candidates:
                found = rule.match(candidate)
                if found:
                    return Classification(
                        carrier=self.name,
                        file_type=found.file_type,
                        cadence=found.cadence,
                        billing_period=found.billing_period,
                        file_format=found.file_format or self.file_format,
                    )
        return None


@dataclass(frozen=True)
class SourceSpec:
    """One ``[[sources]]`` entry. ``options`` holds the kind-specific keys, validated by the collector."""

    name: str
    kind: str
    options: dict[str, Any]


@dataclass(frozen=True)
class IntakeLimits:
    """Decompression-bomb guard: a member may expand to at most ``max_expanded_bytes`` and, once past
    ``ratio_floor_bytes``, to at most ``max_ratio`` times its compressed size; an archive as a whole (all its
    members together) to at most ``max_archive_expanded_bytes`` and, past the same floor, ``max_ratio`` times
    its own size."""

    max_expanded_bytes: int = 20 * 1024**3
    max_archive_expanded_bytes: int = 20 * 1024**3
    max_ratio: int = 200
    ratio_floor_bytes: int = 64 * 1024**2
    max_zip_members: int = 1000


@dataclass(frozen=True)
class DaemonSettings:
    """``[daemon]``: how ``cdr daemon`` runs. On SIGTERM it stops taking new work, then loads what is queued,
    starting no file after ``drain_seconds`` (0: none), before it exits; what is left stays queued for the next
    start. A file the daemon takes wakes its loader at once; files queued by another process (``cdr upload
    --no-load``) are found within ``loader_poll_seconds``."""

    drain_seconds: int = 60
    loader_poll_seconds: int = 5


@dataclass(frozen=True)
class SmtpSettings:
    """``[smtp]``: the inbound mail listener. STARTTLS is offered with ``tls_cert_file``/``tls_key_file``
    (``require_tls`` refuses mail without it); AUTH is required with ``auth_username`` and ``auth_password``
    (``${ENV}`` or ``auth_password_file``, only over TLS); ``[smtp.allowed_senders]`` maps a carrier to the
    senders (addresses or ``@domain``) allowed to mail its route."""

    domain: str
    listen: str = "127.0.0.1"
    port: int = 2525
    mailbox: str = "cdrs"
    max_message_bytes: int = 50 * 1024 * 1024
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    require_tls: bool = False
    auth_username: str | None = None
    auth_options: dict[str, Any] = field(default_factory=dict)
    allowed_senders: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, table: dict, key: str = "smtp") -> "SmtpSettings":
        from .secrets import check_secret

        allowed = {"domain", "listen", "port", "mailbox", "max_message_bytes", "tls_cert_file", "tls_key_file",
                   "require_tls", "auth_username", "auth_password", "auth_password_file", "allowed_senders"}
        for name in table:
            if name not in allowed:
                raise ConfigError(f"{key}.{name}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")
        if not isinstance(table.get("domain"), str) or "." not in table.get("domain", ""):
            raise ConfigError(f"{key}.domain", "is required: the domain mail is addressed to, e.g. billing.example.com")
        port = table.get("port", 2525)
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ConfigError(f"{key}.port", "must be a port number")
        size = table.get("max_message_bytes", cls.max_message_bytes)
        if not isinstance(size, int) or size < 1024:
            raise ConfigError(f"{key}.max_message_bytes", "must be a whole number of at least 1024")
        if ("tls_cert_file" in table) != ("tls_key_file" in table):
            raise ConfigError(f"{key}.tls_key_file", "give both tls_cert_file and tls_key_file")
        if table.get("require_tls") and "tls_cert_file" not in table:
            raise ConfigError(f"{key}.require_tls", "needs tls_cert_file and tls_key_file")
        auth = {k: table[k] for k in ("auth_password", "auth_password_file") if k in table}
        if "auth_username" in table:
            if not auth:
                raise ConfigError(f"{key}.auth_password", 'give auth_password = "${ENV_VAR}" or auth_password_file')
            if "tls_cert_file" not in table:
                raise ConfigError(f"{key}.auth_username", "AUTH needs STARTTLS (tls_cert_file and tls_key_file)")
            check_secret(auth, "auth_password", key)
        senders = table.get("allowed_senders", {})
        if not isinstance(senders, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in senders.values()):
            raise ConfigError(f"{key}.allowed_senders", "must map carriers to lists of addresses or @domains")
        return cls(domain=table["domain"].lower(), listen=table.get("listen", "127.0.0.1"), port=port,
                   mailbox=table.get("mailbox", "cdrs"), max_message_bytes=size,
                   tls_cert_file=table.get("tls_cert_file"), tls_key_file=table.get("tls_key_file"),
                   require_tls=bool(table.get("require_tls", False)), auth_username=table.get("auth_username"),
                   auth_options=auth,
                   allowed_senders={c: tuple(x.lower() for x in v) for c, v in senders.items()})

    def sender_allowed(self, carrier: str | None, sender: str) -> bool:
        allowed = self.allowed_senders.get(carrier or "")
        if not allowed:
            return True
        sender = sender.lower()
        return any(sender == a or (a.startswith("@") and sender.endswith(a)) for a in allowed)


@dataclass(frozen=True)
class FormatDefinition:
    """A record format as configured, not yet parsed: its ``[formats.NAME]`` table and where it comes from
    (:data:`BUILTIN`, or the configuration file that defines it)."""

    name: str
    table: dict[str, Any]
    origin: str

    @property
    def builtin(self) -> bool:
        return self.origin == BUILTIN

    @property
    def key(self) -> str:
        """How errors name it: ``formats.NAME``."""
        return f"formats.{self.name}"


@dataclass(frozen=True)
class BillingSettings:
    """``[billing]``: ``currency``, the ISO 4217 code of amounts whose record names none (Hero's and Tech
    Connections' files do not)."""

    currency: str = "GBP"


@dataclass(frozen=True)
class Config:
    path: Path  # the file in use, absolute
    database_url: str
    staging_dir: Path
    carriers: dict[str, CarrierSpec]
    sources: tuple[SourceSpec, ...]
    limits: IntakeLimits
    smtp: SmtpSettings | None = None
    daemon: DaemonSettings = DaemonSettings()
    # Where database_url was set ("CDR_DATABASE_URL", "database.url in PATH"), for messages about it.
    database_url_origin: str = "database.url"
    # A SQLite database's folder may be created only when the file names it relative to itself (the layout
    # `cdr init` writes); an absolute path or CDR_DATABASE_URL must point into an existing folder.
    create_database_folder: bool = False
    # Every record format by name, unparsed: the built-in ones, replaced or joined by the configuration's.
    format_definitions: dict[str, FormatDefinition] = field(default_factory=dict, repr=False)
    # ``[tariffs.NAME]`` (ingest.billing.tariffs), retail and wholesale, by name.
    tariffs: dict[str, "Tariff"] = field(default_factory=dict)
    billing: BillingSettings = BillingSettings()
    # ``[[nodes]]``, ``[legs]``, ``[alerts]``: our own network (ingest.legs.settings).
    network: NetworkSettings = NetworkSettings()
    # Parsed and compiled formats by name, filled as each is first asked for (load_config parses the
    # configuration's own at once). Not init fields: dataclasses.replace() starts with empty ones.
    _specs: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _compiled: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def formats(self) -> dict[str, "FormatSpec"]:
        """Every record format, parsed, by name (each built-in is parsed on first asking)."""
        return {name: self.format_spec(name) for name in self.format_definitions}

    def format_spec(self, name: str) -> "FormatSpec":
        """The record format ``name``, parsed once per configuration. ConfigError if it is unknown or wrong."""
        spec = self._specs.get(name)
        if spec is None:
            try:
                definition = self.format_definitions[name]
            except KeyError:
                raise ConfigError(f"formats.{name}", f"unknown format {name!r} (known: {self._known()})") from None
            spec = self._specs[name] = _parse_format(definition, self.path)
        return spec

    def format_of(self, carrier: "str | CarrierSpec") -> "FormatSpec":
        """The record format a carrier's files are read by (a carrier's name, or its spec)."""
        spec = carrier if isinstance(carrier, CarrierSpec) else self.carrier(carrier)
        return self.format_spec(spec.format)

    def parser_for(self, carrier: str) -> "FileParser":
        """A parser of ``carrier``'s files (``ingest.formats.engine.FileParser``) on its format, parsed and compiled
        once for this configuration. A new parser each call, sharing the compiled format: a parser counts what
        the file it last read held (``rows_dropped``), so two loads at once each need their own."""
        from .formats.engine import FileParser, compile_format

        name = self.carrier(carrier).format
        compiled = self._compiled.get(name)
        if compiled is None:
            compiled = self._compiled[name] = compile_format(self.format_spec(name))
        return FileParser(compiled.spec, carrier, compiled)

    def carriers_using(self, format_name: str) -> tuple[str, ...]:
        """The carriers whose files format ``format_name`` reads, sorted."""
        return tuple(sorted(c.name for c in self.carriers.values() if c.format == format_name))

    def _known(self) -> str:
        return ", ".join(sorted(self.format_definitions)) or "none"

    def carrier(self, name: str) -> CarrierSpec:
        from .errors import NotFound

        try:
            return self.carriers[name]
        except KeyError:
            known = ", ".join(sorted(self.carriers)) or "none configured"
            raise NotFound(f"unknown carrier {name!r} (known: {known})") from None

    def classify(self, name: str, carrier: str | None = None) -> Classification | None:
        """Classify a file name by the rules of ``carrier``, or of every carrier when none is given.

        With no carrier given, a name matched by rules of two different carriers is ambiguous and
        classified as nothing, so the file is ignored with a reason rather than billed to a guess.
        """
        specs = [self.carrier(carrier)] if carrier else list(self.carriers.values())
        found = [c for c in (spec.classify(name) for spec in specs) if c]
        if len(found) == 1:
            return found[0]
        return None

    def source(self, name: str) -> SourceSpec:
        from .errors import NotFound

        for spec in self.sources:
            if spec.name == name:
                return spec
        raise NotFound(f"unknown source {name!r}")


class ConfigNotFound(ConfigError):
    """No configuration file was named and none exists in any place searched. The CLI exits 2 on it."""

    def __init__(self, searched: list[Path]):
        self.searched = tuple(searched)
        places = ", ".join(str(place) for place in self.searched)
        self.key = "config"
        self.reason = (f"no configuration file found (no --config or $CDR_CONFIG, and none of {places}); "
                       "write one with `cdr init`")
        PermanentError.__init__(self, self.reason)


def config_search_path(env: dict[str, str] | None = None) -> list[Path]:
    """The places searched, in order, when neither ``--config`` nor ``$CDR_CONFIG`` names the file: the working
    directory's ``cdr.toml`` and ``config/cdr.toml``, then ``$HOME/.config/cdr-ingest/cdr.toml``, then
    ``cdr.toml`` in ``$CDR_SYSTEM_CONFIG_DIR`` (default ``/etc/cdr-ingest``)."""
    env = os.environ if env is None else env
    try:
        cwd = Path.cwd()
        places = [cwd / "cdr.toml", cwd / "config" / "cdr.toml"]
    except FileNotFoundError:  # the working directory was removed: there is no "here" to search
        places = []
    try:
        places.append((Path(env["HOME"]) if env.get("HOME") else Path.home()) / ".config" / "cdr-ingest" / "cdr.toml")
    except RuntimeError:  # no home directory at all (an unknown uid in a container): that place is not searched
        pass
    return places + [Path(env.get("CDR_SYSTEM_CONFIG_DIR") or "/etc/cdr-ingest") / "cdr.toml"]


def find_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Path:
    """The configuration file in use, as an absolute path with links resolved (its relative paths are taken from
    the folder it really is in, not a link's): ``path`` (``--config``), else ``$CDR_CONFIG``, else the first of
    :func:`config_search_path` that exists. A named file that does not exist is a ConfigError; nothing named and
    nothing found is ConfigNotFound."""
    env = os.environ if env is None else env
    named = path if path is not None else env.get("CDR_CONFIG") or None
    if named is not None:
        try:
            chosen = Path(named).resolve()
        except (FileNotFoundError, RuntimeError):  # a relative name from a removed directory; a link loop
            raise ConfigError(str(named), "configuration file not found") from None
        if not chosen.exists():
            raise ConfigError(str(named), "configuration file not found")
        return chosen
    searched = config_search_path(env)
    for candidate in searched:
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigNotFound(searched)


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Read, merge and validate the configuration found by :func:`find_config`. Raises ConfigError naming the key
    and the reason (ConfigNotFound when there is no file). The sources' collector options are not checked here:
    :func:`ingest.plugins.load_checked_config` does both (what ``cdr`` runs on)."""
    env = dict(os.environ if env is None else env)
    chosen = find_config(path, env)
    format_origins: dict[str, str] = {}
    raw = _merge_includes(_read_toml(chosen), chosen, format_origins)
    return _build(raw, chosen, env, format_origins)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None


def _merge_includes(raw: dict[str, Any], path: Path, format_origins: dict[str, str]) -> dict[str, Any]:
    """``raw`` with the ``[carriers.*]`` and ``[formats.*]`` tables of every included file merged in (a name
    defined twice is refused); ``format_origins`` gets the file each format comes from."""
    includes = raw.pop("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError("include", "must be a list of file patterns")
    merged = {}
    for section, what in (("carriers", "carrier"), ("formats", "format"), ("tariffs", "tariff")):
        merged[section] = raw.setdefault(section, {})
        if not isinstance(merged[section], dict):
            raise ConfigError(section, f"must be a table of {what} tables")
    format_origins.update({name: str(path) for name in merged["formats"]})
    for pattern in includes:
        matches = sorted(globmod.glob(str(path.parent / pattern)))
        if not matches:
            raise ConfigError("include", f"{pattern!r} matches no file beside {path}")
        for included in matches:
            extra = _read_toml(Path(included))
            unknown = set(extra) - {"carriers", "formats", "tariffs"}
            if unknown:
                raise ConfigError(f"{included}: {sorted(unknown)[0]}",
                                  "an included file may only define [carriers.*], [formats.*] and [tariffs.*]")
            for section in ("carriers", "formats", "tariffs"):
                tables = extra.get(section, {})
                if not isinstance(tables, dict):
                    raise ConfigError(f"{included}: {section}", "must be a table of tables")
                for name, table in tables.items():
                    if name in merged[section]:
                        raise ConfigError(f"{section}.{name}", f"defined twice (again in {included})")
                    merged[section][name] = table
                    if section == "formats":
                        format_origins[name] = str(Path(included).resolve())
    return raw


def _build(raw: dict[str, Any], path: Path, env: dict[str, str], format_origins: dict[str, str] | None = None
           ) -> Config:
    _only(raw, "", {"database", "staging", "intake", "carriers", "formats", "sources", "smtp", "daemon", "tariffs",
                    "billing", "nodes", "legs", "alerts"})
    base = path.parent
    database = _table(raw, "database")
    _only(database, "database", {"url"})
    staging = _table(raw, "staging")
    _only(staging, "staging", {"dir"})
    if env.get("CDR_DATABASE_URL"):
        url, origin, create_folder = _sqlite_url_from(env["CDR_DATABASE_URL"], Path.cwd()), "CDR_DATABASE_URL", False
    else:
        given = _str(database, "database.url", DEFAULT_DATABASE_URL)
        url, origin = _sqlite_url_from(given, base), f"database.url in {path}"
        create_folder = url != given  # a SQLite path relative to the file: its own layout
    if env.get("CDR_STAGING_DIR"):
        staging_dir = Path(env["CDR_STAGING_DIR"]).absolute()
    else:
        staging_dir = base / _str(staging, "staging.dir", DEFAULT_STAGING_DIR)

    intake = _table(raw, "intake")
    _only(intake, "intake", {"max_expanded_bytes", "max_archive_expanded_bytes", "max_ratio", "ratio_floor_bytes",
                             "max_zip_members"})
    defaults = IntakeLimits()
    limits = IntakeLimits(
        max_expanded_bytes=_int(intake, "intake.max_expanded_bytes", defaults.max_expanded_bytes, minimum=1),
        max_archive_expanded_bytes=_int(intake, "intake.max_archive_expanded_bytes",
                                        defaults.max_archive_expanded_bytes, minimum=1),
        max_ratio=_int(intake, "intake.max_ratio", defaults.max_ratio, minimum=1),
        ratio_floor_bytes=_int(intake, "intake.ratio_floor_bytes", defaults.ratio_floor_bytes, minimum=0),
        max_zip_members=_int(intake, "intake.max_zip_members", defaults.max_zip_members, minimum=1),
    )

    definitions = _format_definitions(_table(raw, "formats"), format_origins or {}, path)
    carriers = {name: _carrier(name, table, definitions) for name, table in _table(raw, "carriers").items()}
    tariffs = parse_tariffs(_table(raw, "tariffs"))
    for carrier in carriers.values():
        if carrier.wholesale_tariff is not None:
            chosen = tariffs.get(carrier.wholesale_tariff)
            if chosen is None or not chosen.wholesale:
                wholesale = ", ".join(name for name, t in tariffs.items() if t.wholesale) or "none"
                raise ConfigError(f"carriers.{carrier.name}.wholesale_tariff", f"{carrier.wholesale_tariff!r} is not "
                                                                                 f"a wholesale tariff (wholesale ones: {wholesale})")
    billing = _table(raw, "billing")
    _only(billing, "billing", {"currency"})
    currency = _str(billing, "billing.currency", BillingSettings.currency)
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ConfigError("billing.currency", f"{currency!r} is not an ISO 4217 code (three capital letters)")

    sources_raw = raw.get("sources", [])
    if not isinstance(sources_raw, list):
        raise ConfigError("sources", "must be an array of tables ([[sources]])")
    sources = []
    seen: set[str] = set()
    for index, entry in enumerate(sources_raw):
        key = f"sources[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(key, "must be a table")
        name = _str(entry, f"{key}.name", None)
        kind = _str(entry, f"{key}.kind", None)
        if name in seen:
            raise ConfigError(f"{key}.name", f"source name {name!r} is used twice")
        seen.add(name)
        options = _local_paths_from({k: v for k, v in entry.items() if k not in ("name", "kind")}, kind, base)
        carrier = options.get("carrier")
        if carrier is not None and carrier not in carriers:
            raise ConfigError(f"{key}.carrier", f"unknown carrier {carrier!r}")
        sources.append(SourceSpec(name=name, kind=kind, options=options))

    config = Config(
        path=path,
        database_url=url,
        staging_dir=staging_dir,
        carriers=carriers,
        sources=tuple(sources),
        limits=limits,
        smtp=SmtpSettings.of(_local_paths_from(_table(raw, "smtp"), "smtp", base)) if "smtp" in raw else None,
        daemon=_daemon_settings(_table(raw, "daemon")),
        database_url_origin=origin,
        create_database_folder=create_folder,
        format_definitions=definitions,
        tariffs=tariffs,
        billing=BillingSettings(currency=currency),
        network=parse_network(raw),
    )
    # A mistake in a format the configuration defines fails at start: each is parsed now. The built-in ones (tested
    # with the engine) are parsed when first asked for, so that loading the configuration stays light.
    for name, definition in definitions.items():
        if not definition.builtin:
            config.format_spec(name)
    return config


_RELATIVE_SQLITE = re.compile(r"(?P<scheme>sqlite(?:\+\w+)?:///)(?P<path>[^/?][^?]*)(?P<query>\?.*)?", re.S)
# Options naming a folder on this machine, by source kind (a remote kind's dirs and move_to are paths on the
# server). Every kind's options ending in "_file", and known_hosts, name files on this machine too.
_LOCAL_FOLDER_OPTIONS = {"dropfolder": ("path",), "maildir": ("path",), "directory": ("move_to",)}


def _sqlite_url_from(url: str, base: Path) -> str:
    """A SQLite URL whose file path is relative, made absolute from ``base``; any other URL as given."""
    match = _RELATIVE_SQLITE.fullmatch(url)
    if match is None or match["path"] == ":memory:":
        return url
    return f"{match['scheme']}{base / match['path']}{match['query'] or ''}"


def _local_paths_from(options: dict[str, Any], kind: str, base: Path) -> dict[str, Any]:
    """``options`` with each relative path on this machine made absolute from ``base`` (the configuration
    file's folder); values of the wrong type are left for validation to refuse."""

    def absolute(value: Any) -> Any:
        return str(base / value) if isinstance(value, str) and value and not Path(value).is_absolute() else value

    out = dict(options)
    for name, value in options.items():
        if name.endswith("_file") or name == "known_hosts" or name in _LOCAL_FOLDER_OPTIONS.get(kind, ()):
            out[name] = absolute(value)
    if kind == "directory" and isinstance(options.get("dirs"), list):
        out["dirs"] = [{**entry, "path": absolute(entry.get("path"))} if isinstance(entry, dict) else entry
                       for entry in options["dirs"]]
    return out


def _daemon_settings(table: dict[str, Any]) -> DaemonSettings:
    _only(table, "daemon", {"drain_seconds", "loader_poll_seconds"})
    return DaemonSettings(
        drain_seconds=_int(table, "daemon.drain_seconds", DaemonSettings.drain_seconds, minimum=0),
        loader_poll_seconds=_int(table, "daemon.loader_poll_seconds", DaemonSettings.loader_poll_seconds, minimum=1),
    )


# -- record formats ---------------------------------------------------------------------------------------


def _format_definitions(tables: dict[str, Any], origins: dict[str, str], path: Path) -> dict[str, FormatDefinition]:
    """The built-in formats, then the configuration's (one with a built-in's name replaces it)."""
    from .formats.spec import builtin_format_tables  # the grammar only: no Arrow

    builtin = builtin_format_tables()
    out = {name: FormatDefinition(name, table, BUILTIN) for name, table in builtin.items()}
    for name, table in tables.items():
        if name in FILE_FORMATS:
            raise ConfigError(f"formats.{name}", f"a format may not be named like a file format "
                                                 f"({', '.join(FILE_FORMATS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"formats.{name}", "must be a table")
        out[name] = FormatDefinition(name, table, origins.get(name, str(path)))
    return dict(sorted(out.items()))


def _parse_format(definition: FormatDefinition, config_path: Path) -> "FormatSpec":
    """The format parsed (``ingest.formats.spec.parse_format``); its errors name ``formats.NAME...``, after the
    included file it is defined in, if any."""
    from .formats.spec import parse_format

    included = not definition.builtin and definition.origin != str(config_path)
    where = f"{definition.origin}: {definition.key}" if included else definition.key
    return parse_format(definition.name, definition.table, where)


# -- carriers -------------------------------------------------------------------------------------------------


def _carrier(name: str, table: Any, formats: dict[str, FormatDefinition]) -> CarrierSpec:
    key = f"carriers.{name}"
    if not isinstance(table, dict):
        raise ConfigError(key, "must be a table")
    _only(table, key, {"parser", "same_name_rule", "format", "file_format", "default_type", "files", "options",
                       "products", "wholesale_tariff"})
    same_name = table.get("same_name_rule", False)
    if not isinstance(same_name, bool):
        raise ConfigError(f"{key}.same_name_rule", "must be true or false")
    record_format, file_format = _carrier_formats(key, table, formats)
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{key}.options", "must be a table")
    for option in options:
        if option in _MOVED_OPTIONS:
            raise ConfigError(f"{key}.options.{option}",
                              "moved: which rows are charges is said by the format's [[formats.NAME.records]] rules "
                              "(techconnections-feed has the old defaults); to change them, define a format of "
                              "your own and name it in format (see docs/formats.md)")
        raise ConfigError(f"{key}.options.{option}",
                          "unknown option (a carrier takes none: how its files read is its format's)")
    default_type = table.get("default_type", "cdr")
    if default_type not in FILE_TYPES:
        raise ConfigError(f"{key}.default_type", f"must be one of {', '.join(FILE_TYPES)}")
    files = table.get("files", [])
    if not isinstance(files, list):
        raise ConfigError(f"{key}.files", "must be an array of tables ([[carriers.NAME.files]])")
    rules = tuple(_rule(f"{key}.files[{i}]", entry) for i, entry in enumerate(files))
    products = table.get("products", {})
    if not isinstance(products, dict) or not all(isinstance(v, str) and v for v in products.values()):
        raise ConfigError(f"{key}.products", 'must map product codes to transaction types: "CODE" = "line-rental"')
    wholesale_tariff = table.get("wholesale_tariff")
    if wholesale_tariff is not None:
        wholesale_tariff = _str(table, f"{key}.wholesale_tariff", None)
    return CarrierSpec(
        name=name, format=record_format, same_name_rule=same_name, file_format=file_format,
        default_type=default_type, rules=rules, products=dict(products), wholesale_tariff=wholesale_tariff,
    )


def _carrier_formats(key: str, table: dict[str, Any], formats: dict[str, FormatDefinition]) -> tuple[str, str | None]:
    """A carrier's record format and its default file format, from ``format``, ``file_format`` and the old
    ``parser``. ``format`` names a record format; one of the file formats (csv, txt, pipe, json) there is taken as
    ``file_format`` (its meaning before record formats). ``parser = "hero"`` / ``"techconnections"`` mean format
    hero-feed / techconnections-feed."""
    known = ", ".join(sorted(formats)) or "none"
    given = table.get("format")
    if given is not None and (not isinstance(given, str) or not given):
        raise ConfigError(f"{key}.format", "must be the name of a format")
    file_format = table.get("file_format")
    if file_format is not None and file_format not in FILE_FORMATS:
        raise ConfigError(f"{key}.file_format", f"must be one of {', '.join(FILE_FORMATS)}")
    record_format = None
    if given in FILE_FORMATS:
        if file_format is not None and file_format != given:
            raise ConfigError(f"{key}.format", f"{given!r} is a file format, and file_format says {file_format!r}")
        file_format = given
    elif given is not None:
        if given not in formats:
            raise ConfigError(f"{key}.format", f"unknown format {given!r} (known: {known})")
        record_format = given
    if "parser" in table:
        parser = _str(table, f"{key}.parser", None)
        if parser == "generic":
            raise ConfigError(f"{key}.parser", "there is no generic parser: describe the files as a format, "
                                               '[formats.NAME] (see docs/formats.md), and say format = "NAME" here')
        if parser not in LEGACY_PARSERS:
            raise ConfigError(f"{key}.parser", f"unknown parser {parser!r} (known: {', '.join(LEGACY_PARSERS)}; "
                                               f'parsers are formats now: format = "NAME", known: {known})')
        if record_format is not None and record_format != LEGACY_PARSERS[parser]:
            raise ConfigError(f"{key}.parser", f"parser {parser!r} means format {LEGACY_PARSERS[parser]!r}, and "
                                               f"format says {record_format!r}: give format alone")
        record_format = LEGACY_PARSERS[parser]
    if record_format is None:
        raise ConfigError(f"{key}.format", f'is required: the format its files are read by (format = "NAME"; '
                                           f"known: {known})")
    return record_format, file_format


def _rule(key: str, entry: Any) -> FileRule:
    if not isinstance(entry, dict):
        raise ConfigError(key, "must be a table")
    _only(entry, key, {"pattern", "regex", "type", "cadence", "format", "case_sensitive"})
    if ("pattern" in entry) == ("regex" in entry):
        raise ConfigError(key, "give exactly one of pattern (a glob) or regex")
    case_sensitive = entry.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise ConfigError(f"{key}.case_sensitive", "must be true or false")
    flags = 0 if case_sensitive else re.IGNORECASE
    if "pattern" in entry:
        source = glob_to_regex(_str(entry, f"{key}.pattern", None), f"{key}.pattern")
    else:
        source = _str(entry, f"{key}.regex", None)
    try:
        regex = re.compile(source, flags)
    except re.error as exc:
        raise ConfigError(f"{key}.{'pattern' if 'pattern' in entry else 'regex'}", f"invalid pattern: {exc}") from None
    if ("month" in regex.groupindex) != ("year" in regex.groupindex):
        raise ConfigError(key, "a billing period needs both {year} and {month} groups")
    file_type = _choice(entry, f"{key}.type", FILE_TYPES)
    cadence = _choice(entry, f"{key}.cadence", CADENCES)
    fmt = entry.get("format")  # a rule's format is the file format: rules classify file names
    if fmt is not None and fmt not in FILE_FORMATS:
        raise ConfigError(f"{key}.format", f"must be one of {', '.join(FILE_FORMATS)} (a rule's format is the file "
                                           "format)")
    return FileRule(key=key, regex=regex, file_type=file_type, cadence=cadence, file_format=fmt)


def glob_to_regex(pattern: str, key: str = "pattern") -> str:
    """A file-name glob (``*``, ``?``, ``[...]``) with ``{year}``, ``{month}``, ``{day}`` placeholders."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "{":
            end = pattern.find("}", i)
            name = pattern[i + 1 : end] if end != -1 else ""
            if name not in _PLACEHOLDERS:
                raise ConfigError(key, f"unknown placeholder at {pattern[i:]!r} (known: {', '.join(_PLACEHOLDERS)})")
            out.append(_PLACEHOLDERS[name])
            i = end + 1
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise ConfigError(key, "unclosed [ in pattern")
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


def _only(table: dict[str, Any], key: str, allowed: set[str]) -> None:
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            raise ConfigError(where, f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _str(table: dict[str, Any], key: str, default: str | None) -> str:
    value = table.get(key.rsplit(".", 1)[-1], default)
    if value is None:
        raise ConfigError(key, "is required")
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a non-empty string")
    return value


def _int(table: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = table.get(key.rsplit(".", 1)[-1], default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(key, f"must be a whole number of at least {minimum}")
    return value


def _choice(table: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = table.get(key.rsplit(".", 1)[-1])
    if value not in allowed:
        raise ConfigError(key, f"must be one of {', '.join(allowed)} (got {value!r})")
    return value
