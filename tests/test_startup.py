"""`cdr` starts light: importing the CLI, `cdr --help` and `cdr --version` load none of the heavy libraries
(they are imported by the commands that use them), and `cdr --help` still lists every command.

Each check runs a fresh interpreter from an unrelated working directory with no CDR_* variables, as an admin
typing `cdr --help` anywhere would. The time it saves is measured by bench/startup_bench.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.cli import cli

HEAVY = ("pyarrow", "sqlalchemy", "paramiko", "aioftp", "psycopg", "alembic", "watchdog", "aiosmtpd", "imap_tools",
         "croniter")
# Runs `cdr ARGS...` as the console script does, then prints which heavy modules were imported.
RUN_AND_LIST_HEAVY = """
import json, sys
heavy = sys.argv.pop(1).split(",")
sys.argv[0] = "cdr"
try:
    if len(sys.argv) > 1:
        from ingest.cli import main
        main()
    else:
        import ingest.cli
except SystemExit:
    pass
print("\\nHEAVY " + json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``argv`` in ``cwd`` with no CDR_* variables (no configuration named), its output captured."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDR_")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def run_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", code, *args], cwd)


def heavy_loaded(args: list[str], cwd: Path) -> list[str]:
    result = run_python(RUN_AND_LIST_HEAVY, ",".join(HEAVY), *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.rpartition("\nHEAVY ")[2])


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"]], ids=["import ingest.cli", "--help", "--version"])
def test_cli_start_loads_no_heavy_module(tmp_path, args):
    assert heavy_loaded(args, tmp_path) == []


def test_help_lists_every_command(tmp_path):
    cdr = Path(sys.executable).with_name("cdr")
    argv = [str(cdr)] if cdr.exists() else [sys.executable, "-m", "ingest.cli"]
    result = run([*argv, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.partition("\nCommands:\n")[2].splitlines()
    assert {line.split()[0] for line in listed if line.strip()} == set(cli.commands)
    assert result.stderr == ""


def test_version_is_the_package_version(tmp_path):
    from importlib.metadata import version

    result = run_python("import sys; sys.argv[0] = 'cdr'; from ingest.cli import main; main()", "--version",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cdr, version {version('cdr-ingest')}"
