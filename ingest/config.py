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
"""

from __future__ import annotations

import glob as globmod
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, PermanentError

DEFAULT_DATABASE_URL = "sqlite:///var/cdr.sqlite"
DEFAULT_STAGING_DIR = "var/staging"

FILE_TYPES = ("cdr", "sdr")
FORMATS = ("csv", "txt", "pipe", "json")
CADENCES = ("daily", "monthly", "hourly", "weekly", "adhoc", "other")
# What became of a received file (the catalog's files.status); here, with the other vocabularies, so the
# CLI can offer them without importing the catalog (SQLAlchemy).
STATUSES = ("queued", "loaded", "held", "failed", "discarded", "ignored", "superseded")

_PLACEHOLDERS = {
    "year": r"(?P<year>\d{4})",
    "month": r"(?P<month>0[1-9]|1[0-2])",
    "day": r"(?P<day>0[1-9]|[12]\d|3[01])",
    "any": r"(?P<any>.*)",
}


@dataclass(frozen=True)
class Classification:
    """What a file is, as far as the carrier rules (or the caller) can tell."""

    carrier: str | None = None
    file_type: str | None = None
    cadence: str | None = None
    billing_period: str | None = None
    file_format: str | None = None

    def merged_over(self, fallback: "Classification") -> "Classification":
        """Fields of self win; fields self leaves empty come from fallback."""
        return Classification(
            carrier=self.carrier or fallback.carrier,
            file_type=self.file_type or fallback.file_type,
            cadence=self.cadence or fallback.cadence,
            billing_period=self.billing_period or fallback.billing_period,
            file_format=self.file_format or fallback.file_format,
        )


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
    parser: str
    same_name_rule: bool = False
    default_format: str | None = None
    # The type of a file routed to this carrier (a mail route, a source naming only the carrier) when none
    # of its file rules matches the file's name.
    default_type: str = "cdr"
    rules: tuple[FileRule, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

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
                        file_format=found.file_format or self.default_format,
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
    and the reason (ConfigNotFound when there is no file)."""
    env = dict(os.environ if env is None else env)
    chosen = find_config(path, env)
    raw = _merge_includes(_read_toml(chosen), chosen)
    return _build(raw, chosen, env)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None


def _merge_includes(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    includes = raw.pop("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError("include", "must be a list of file patterns")
    carriers = raw.setdefault("carriers", {})
    if not isinstance(carriers, dict):
        raise ConfigError("carriers", "must be a table of carrier tables")
    for pattern in includes:
        matches = sorted(globmod.glob(str(path.parent / pattern)))
        if not matches:
            raise ConfigError("include", f"{pattern!r} matches no file beside {path}")
        for included in matches:
            extra = _read_toml(Path(included))
            unknown = set(extra) - {"carriers"}
            if unknown:
                raise ConfigError(f"{included}: {sorted(unknown)[0]}", "an included file may only define [carriers.*]")
            for name, table in extra.get("carriers", {}).items():
                if name in carriers:
                    raise ConfigError(f"carriers.{name}", f"defined twice (again in {included})")
                carriers[name] = table
    return raw


def _build(raw: dict[str, Any], path: Path, env: dict[str, str]) -> Config:
    _only(raw, "", {"database", "staging", "intake", "carriers", "sources", "smtp", "daemon"})
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

    carriers = {name: _carrier(name, table) for name, table in _table(raw, "carriers").items()}

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
    )
    _check_plugins(config)
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


def _check_plugins(config: Config) -> None:
    """Parsers and collectors are looked up now, so a misspelt one fails at start, not at first use."""
    from carriers import PARSERS

    from .collectors import COLLECTORS

    for carrier in config.carriers.values():
        if carrier.parser not in PARSERS:
            known = ", ".join(sorted(PARSERS))
            raise ConfigError(f"carriers.{carrier.name}.parser", f"unknown parser {carrier.parser!r} (known: {known})")
        PARSERS[carrier.parser].check_options(carrier)
    for index, source in enumerate(config.sources):
        if source.kind not in COLLECTORS:
            known = ", ".join(sorted(COLLECTORS))
            raise ConfigError(f"sources[{index}].kind", f"unknown kind {source.kind!r} (known: {known})")
        COLLECTORS[source.kind].check_options(source, config, f"sources[{index}]")


def _carrier(name: str, table: Any) -> CarrierSpec:
    key = f"carriers.{name}"
    if not isinstance(table, dict):
        raise ConfigError(key, "must be a table")
    _only(table, key, {"parser", "same_name_rule", "format", "default_type", "files", "options"})
    parser = _str(table, f"{key}.parser", None)
    same_name = table.get("same_name_rule", False)
    if not isinstance(same_name, bool):
        raise ConfigError(f"{key}.same_name_rule", "must be true or false")
    default_format = table.get("format")
    if default_format is not None and default_format not in FORMATS:
        raise ConfigError(f"{key}.format", f"must be one of {', '.join(FORMATS)}")
    default_type = table.get("default_type", "cdr")
    if default_type not in FILE_TYPES:
        raise ConfigError(f"{key}.default_type", f"must be one of {', '.join(FILE_TYPES)}")
    files = table.get("files", [])
    if not isinstance(files, list):
        raise ConfigError(f"{key}.files", "must be an array of tables ([[carriers.NAME.files]])")
    rules = tuple(_rule(f"{key}.files[{i}]", entry) for i, entry in enumerate(files))
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{key}.options", "must be a table")
    return CarrierSpec(
        name=name, parser=parser, same_name_rule=same_name, default_format=default_format,
        default_type=default_type, rules=rules,
        options=options,
    )


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
    fmt = entry.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"{key}.format", f"must be one of {', '.join(FORMATS)}")
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
