"""``cdr init``: a new installation's configuration, written once, with the folders it names.

The file is commented, includes the built-in carriers' definitions (copied in, so the admin owns and edits
them) and one drop folder per carrier; every path in it is relative to the file's own folder, so the
installation can be moved or run from any working directory. Nothing here opens a catalog: the database is
created on first use, in the folder made here.
"""

from __future__ import annotations

import os
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import PermanentError

# The built-in carrier definitions, the files config/cdr.toml includes: in the source tree (a clone, an
# editable install), else where an installed wheel put them (pyproject's data-files: share/cdr-ingest/carriers
# under the installation's prefix, or the user's).
INSTALLED_CARRIERS = "share/cdr-ingest/carriers"
BUILTIN_CARRIER_FOLDERS = (
    Path(__file__).resolve().parent.parent / "config" / "carriers",
    Path(sysconfig.get_path("data")) / INSTALLED_CARRIERS,
    Path(sysconfig.get_path("data", sysconfig.get_preferred_scheme("user"))) / INSTALLED_CARRIERS,
)
DATABASE_FOLDER = "var"
STAGING_FOLDER = "var/staging"
DROP_FOLDERS = "var/dropbox"

_HEADER = """\
# cdr-ingest configuration, written by `cdr init`; `cdr doctor` checks it.
#
# Found, first wins, at: --config PATH, $CDR_CONFIG, ./cdr.toml, ./config/cdr.toml,
# ~/.config/cdr-ingest/cdr.toml, /etc/cdr-ingest/cdr.toml.
# Relative paths in this file are relative to this file's folder, whatever the working directory.
# Environment variables override: CDR_DATABASE_URL, CDR_STAGING_DIR (relative there: the working directory).

[database]
url = "sqlite:///{database_folder}/cdr.sqlite"     # or postgresql://user@host/dbname (psycopg 3)

[staging]
dir = "{staging_folder}"                      # every file received, byte for byte, by content hash

# ---------------------------------------------------------------------------------------------------------
# Carriers: the built-in definitions. A carrier's format says how its files read (format = "hero-feed";
# `cdr formats list` shows every format; write your own as [formats.NAME] tables, see docs/formats.md); its
# file rules map file names to type (cdr | sdr), cadence and billing period; add [[carriers.NAME.files]]
# rules or whole [carriers.NAME] tables of your own.
# ---------------------------------------------------------------------------------------------------------

"""

_DROP_FOLDER = """\
[[sources]]
name = "{carrier}-drop"
kind = "dropfolder"
path = "{folder}"
# type and cadence by the carrier's file rules, else its default_type
carrier = "{carrier}"
"""

_FOOTER = """\
# ---------------------------------------------------------------------------------------------------------
# Remote sources and email (uncomment and fill in; see the README for every option). Secrets are never
# written here: password = "${ENV_VAR}" or password_file.
# ---------------------------------------------------------------------------------------------------------
# [[sources]]
# name = "hero-sftp"
# kind = "sftp"
# host = "sftp.example.net"
# username = "81234567"
# private_key_file = "keys/hero_ed25519"     # relative: beside this file
# known_hosts = "keys/known_hosts"
# interval_seconds = 1200
# [[sources.dirs]]
# path = "/cdr/daily"                        # a path on the server
# carrier = "hero"
#
# [smtp]                                     # the inbound listener `cdr daemon` runs: cdrs@, cdrs+<carrier>@
# domain = "billing.example.com"
# port = 2525

# ---------------------------------------------------------------------------------------------------------
# Billing (README "Billing"): tariffs your customers name in their `tariff` column; amounts are strings so
# that they are exact; the most specific matching rate wins. A carrier maps its product codes to transaction
# types with [carriers.NAME.products] "CODE" = "line-rental".
# ---------------------------------------------------------------------------------------------------------
# [billing]
# currency = "GBP"                           # of records that name none
#
# [tariffs.standard]
# [[tariffs.standard.fixed]]                 # charges: fixed | pro-rata | markup
# transaction_type = "line-rental"
# charge = "pro-rata"
# amount = "12.00"
# [[tariffs.standard.usage]]                 # calls: per_minute (with increments) or markup_percent
# call_type = "Mobile"
# per_minute = "0.15"
# increment_seconds = 60
# minimum_seconds = 60

# ---------------------------------------------------------------------------------------------------------
# Our own network (README "Our own network"): FreeRADIUS detail files of our gateways and SIP server, joined
# into one record per call (xDRs) and billed as calls. Trusted nodes: a call one of them relays waits for its
# record and takes the account from it; kind = "pbx" bills each participant's session.
# ---------------------------------------------------------------------------------------------------------
# [carriers.network]
# format = "radius-detail"
# default_type = "acct"
#
# [[nodes]]
# name = "gw-a"
# ip = "10.0.0.1"
#
# [legs]
# window_hours = 4                           # a call whose legs never all come is closed, incomplete
#
# [alerts]                                   # a call whose User-Name names no account: mailed here
# mail_to = "noc@example.com"
# smtp_host = "127.0.0.1"
"""


@dataclass(frozen=True)
class Initialised:
    """What ``cdr init`` did: the file written, the folders it names (created where missing), the carriers it
    includes, and the command to run next."""

    config_path: Path
    folders: tuple[Path, ...]
    carriers: tuple[str, ...]
    next_command: str


def init(directory: str | os.PathLike[str] = ".", force: bool = False) -> Initialised:
    """Write ``DIR/cdr.toml`` and create the folders it names (database, staging, one drop folder per built-in
    carrier). An existing ``cdr.toml`` is refused (PermanentError, nothing changed) unless ``force``, which
    rewrites it; folders already there are kept as they are."""
    root = Path(directory).absolute()
    path = root / "cdr.toml"
    if path.exists() and not force:
        raise PermanentError(f"{path} already exists (keep it, or rewrite it with `cdr init --force`)")
    carriers, definitions = _builtin_carriers()
    folders = [root / DATABASE_FOLDER, root / STAGING_FOLDER] + [root / DROP_FOLDERS / name for name in carriers]
    text = _HEADER.format(path=path, database_folder=DATABASE_FOLDER, staging_folder=STAGING_FOLDER)
    text += "\n".join(definition.rstrip() + "\n" for definition in definitions)
    text += ("\n# Drop folders: a file put here is taken once fully written, then moved to done/ beside it.\n"
             + "\n".join(_DROP_FOLDER.format(carrier=name, folder=f"{DROP_FOLDERS}/{name}") for name in carriers)
             + "\n" + _FOOTER)
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        with open(path, "w" if force else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise PermanentError(f"{path} already exists (keep it, or rewrite it with `cdr init --force`)") from None
    except OSError as exc:
        raise PermanentError(f"cannot write {exc.filename or path}: {exc.strerror}") from None
    command = f"cdr upload FILE... --carrier {carriers[0]} --type cdr"
    if root != Path.cwd():
        command = f"cd {root} && {command}"
    return Initialised(config_path=path, folders=tuple(folders), carriers=tuple(carriers), next_command=command)


def _builtin_carriers() -> tuple[list[str], list[str]]:
    """The built-in carriers' names, and the text of each file defining them (comments kept), in file order:
    from the first of BUILTIN_CARRIER_FOLDERS that has any."""
    files = next((found for folder in BUILTIN_CARRIER_FOLDERS if (found := sorted(folder.glob("*.toml")))), [])
    if not files:
        places = ", ".join(str(folder) for folder in BUILTIN_CARRIER_FOLDERS)
        raise PermanentError(f"the built-in carrier definitions are not installed (looked in {places})")
    definitions = [file.read_text(encoding="utf-8") for file in files]
    names = [name for text in definitions for name in tomllib.loads(text).get("carriers", {})]
    return names, definitions
