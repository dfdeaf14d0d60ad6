"""contrib/systemd/cdr-ingest.service: the daemon as its own user with the config in /etc/cdr-ingest, restarted on
failure, given longer than its drain to stop on SIGTERM, sandboxed, logging JSON to the journal; a command the
installed `cdr` accepts; and a unit systemd itself accepts (`systemd-analyze verify`, from Debian's systemd
package: a loud skip without it, a failure under CI=true, where tests/setup-debian.sh installs it).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.config import DaemonSettings

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "systemd" / "cdr-ingest.service"
INSTALLED_CDR = "/opt/cdr-ingest/bin/cdr"


def unit_settings(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """Each section's settings, every value of a key that is given more than once, comments left out."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, str]:
    """The [Service] section, the last value of each key (as systemd reads a key given twice)."""
    return {key: values[-1] for key, values in unit_settings()["Service"].items()}


def test_unit_runs_the_daemon_as_its_own_user_with_its_config():
    unit = unit_settings()
    settings = service()
    assert settings["User"] == settings["Group"] == "cdr-ingest"
    assert "CDR_CONFIG=/etc/cdr-ingest/cdr.toml" in unit["Service"]["Environment"]
    assert shlex.split(settings["ExecStart"]) == [INSTALLED_CDR, "--log-json", "daemon"]
    assert settings["Restart"] == "on-failure"
    assert settings["StateDirectory"] == "cdr-ingest"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_stops_with_sigterm_after_the_drain():
    settings = service()
    assert settings["KillSignal"] == "SIGTERM"
    timeout = settings["TimeoutStopSec"]
    assert timeout.isdigit(), "TimeoutStopSec in plain seconds"
    assert int(timeout) > DaemonSettings.drain_seconds  # the daemon loads what is queued before it exits


def test_unit_is_sandboxed_and_logs_to_the_journal():
    settings = service()
    assert {key: settings.get(key) for key in (
        "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "ProtectKernelTunables",
        "ProtectKernelModules", "ProtectKernelLogs", "RestrictAddressFamilies", "SystemCallFilter", "StandardOutput",
        "StandardError",
    )} == {
        "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/cdr-ingest", "ProtectHome": "true",
        "PrivateTmp": "true", "NoNewPrivileges": "true", "ProtectKernelTunables": "true",
        "ProtectKernelModules": "true", "ProtectKernelLogs": "true", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter": "@system-service", "StandardOutput": "journal", "StandardError": "journal",
    }


def this_cdr() -> str:
    cdr = Path(sys.executable).with_name("cdr")
    assert cdr.exists(), f"no cdr console script next to {sys.executable}: pip install -e ."
    return str(cdr)


def test_exec_start_is_a_command_cdr_accepts(tmp_path):
    """The unit's arguments, given to this checkout's `cdr` with --help: every option and the command exist."""
    args = shlex.split(service()["ExecStart"])[1:]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDR_")}
    result = subprocess.run([this_cdr(), *args, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: cdr daemon")


def test_systemd_accepts_the_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        message = "systemd-analyze is not installed (Debian's systemd package): the unit was NOT verified; " \
                  "run tests/setup-debian.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # systemd checks that ExecStart's program exists: point it at this checkout's cdr, nothing else changed.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(f"ExecStart={INSTALLED_CDR} ", f"ExecStart={this_cdr()} "))
    assert unit.read_text() != UNIT.read_text()
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    # An unknown key or a bad value is only a warning to systemd (exit 0): any line naming the unit fails.
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr
