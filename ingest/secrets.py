"""Secrets in the configuration: never written in the file itself.

A secret option takes ``"${ENV_VAR}"`` (read from the environment) or comes as ``<option>_file`` (a path
whose content, trailing newline removed, is the secret). A literal value is refused at start. Resolved
values are wrapped in :class:`Secret`, whose ``repr``/``str`` never show the value, so a secret printed by
accident in a log, an error or ``--json`` shows as ``***``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True)
class Secret:
    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def check_secret(options: dict, name: str, key: str, env: dict[str, str] | None = None) -> None:
    """At start: refuse a literal secret, an unset variable, a missing file, or both forms at once."""
    env = os.environ if env is None else env
    inline, from_file = options.get(name), options.get(f"{name}_file")
    if inline is not None and from_file is not None:
        raise ConfigError(f"{key}.{name}", f"give {name} or {name}_file, not both")
    if inline is not None:
        match = _ENV_REFERENCE.match(inline) if isinstance(inline, str) else None
        if match is None:
            raise ConfigError(f"{key}.{name}", f"secrets are not written in the file: use \"${{ENV_VAR}}\" or {name}_file")
        if match.group(1) not in env:
            raise ConfigError(f"{key}.{name}", f"environment variable {match.group(1)} is not set")
    if from_file is not None:
        if not isinstance(from_file, str) or not Path(from_file).is_file():
            raise ConfigError(f"{key}.{name}_file", f"not a readable file: {from_file!r}")


def require_secret(options: dict, name: str, key: str, env: dict[str, str] | None = None) -> None:
    """Like :func:`check_secret`, and the secret must be given (one of the two forms)."""
    check_secret(options, name, key, env)
    if name not in options and f"{name}_file" not in options:
        raise ConfigError(f"{key}.{name}", f'give {name} = "${{ENV_VAR}}" or {name}_file')


def resolve_secret(options: dict, name: str, env: dict[str, str] | None = None) -> Secret | None:
    """The secret ``name`` of a source's options, or None when not configured."""
    env = os.environ if env is None else env
    inline, from_file = options.get(name), options.get(f"{name}_file")
    if inline is not None:
        match = _ENV_REFERENCE.match(inline)
        if match is None or match.group(1) not in env:
            raise ConfigError(name, "secret not available (see the configuration check)")
        return Secret(env[match.group(1)])
    if from_file is not None:
        try:
            return Secret(Path(from_file).read_text().rstrip("\r\n"))
        except OSError as exc:
            raise ConfigError(f"{name}_file", f"cannot read: {exc.strerror}") from None
    return None
