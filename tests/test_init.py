"""``cdr init [DIR]``: a commented cdr.toml with the built-in carriers and one drop folder each, the folders it
names, the next command; an existing file kept unless --force. Run as a real process from an unrelated
directory, then used: a file dropped in the folder it made loads (SQLite in its own layout, and PostgreSQL)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from ingest.config import load_config
from ingest.errors import PermanentError
from tests.test_config_discovery import drop_a_sample, isolated_env, one_line, run_cdr, unrelated_dir

REPO = Path(__file__).resolve().parent.parent


def test_init_writes_a_commented_configuration_and_the_folders_it_names(tmp_path):
    cwd = unrelated_dir(tmp_path)
    site = tmp_path / "srv" / "cdr"
    done = run_cdr("init", str(site), cwd=cwd, env=isolated_env(tmp_path))
    assert done.returncode == 0, done.stderr
    config = site / "cdr.toml"
    text = config.read_text()
    assert text.startswith("# cdr-ingest configuration") and "relative to this file's folder" in text
    raw = tomllib.loads(text)
    assert set(raw["carriers"]) == {"hero", "techconnections"}
    assert [(s["name"], s["kind"], s["path"], s["carrier"]) for s in raw["sources"]] == [
        ("hero-drop", "dropfolder", "var/dropbox/hero", "hero"),
        ("techconnections-drop", "dropfolder", "var/dropbox/techconnections", "techconnections")]
    for folder in ("var", "var/staging", "var/dropbox/hero", "var/dropbox/techconnections"):
        assert (site / folder).is_dir()
    loaded = load_config(config, env={})
    assert loaded.database_url == f"sqlite:///{site}/var/cdr.sqlite"
    assert done.stdout.splitlines()[-1] == f"next: cd {site} && cdr upload FILE... --carrier hero --type cdr"
    assert list(cwd.iterdir()) == [] and not (site / "var" / "cdr.sqlite").exists()  # no catalog opened


def test_init_keeps_an_existing_configuration_unless_forced(tmp_path):
    cwd = unrelated_dir(tmp_path)
    env = isolated_env(tmp_path)
    assert run_cdr("init", cwd=cwd, env=env).returncode == 0
    config = cwd / "cdr.toml"
    config.write_text("# mine\n")
    again = run_cdr("init", cwd=cwd, env=env)
    assert (again.returncode, again.stdout) == (1, "")
    assert one_line(again.stderr) == f"error: {config} already exists (keep it, or rewrite it with `cdr init --force`)"
    assert config.read_text() == "# mine\n"
    forced = run_cdr("init", "--force", cwd=cwd, env=env)
    assert forced.returncode == 0, forced.stderr
    assert "[carriers.hero]" in config.read_text()
    assert forced.stdout.splitlines()[-1] == "next: cdr upload FILE... --carrier hero --type cdr"


def test_after_init_the_found_configuration_takes_a_dropped_file(tmp_path, database_url):
    """From the folder init wrote (./cdr.toml found), a file dropped in the carrier's folder loads; on SQLite
    into the catalog of init's layout, on PostgreSQL into the one CDR_DATABASE_URL names."""
    site = unrelated_dir(tmp_path)
    env = isolated_env(tmp_path)
    assert run_cdr("init", cwd=site, env=env).returncode == 0
    if not database_url.startswith("sqlite"):
        env["CDR_DATABASE_URL"] = database_url
    dropped = drop_a_sample(site / "var" / "dropbox" / "hero")
    done = run_cdr("watch", "--once", cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    assert "hero-drop: #1 hero_cdr_20261001.csv: loaded" in done.stdout
    assert (site / "var" / "dropbox" / "hero" / "done" / dropped.name).exists()
    assert (site / "var" / "cdr.sqlite").exists() == database_url.startswith("sqlite")


def test_init_has_help_with_an_example(tmp_path):
    done = run_cdr("init", "--help", cwd=unrelated_dir(tmp_path), env=isolated_env(tmp_path))
    assert done.returncode == 0 and "Example:" in done.stdout and "cdr init" in done.stdout


def test_an_installation_without_the_source_tree_takes_the_carriers_pyproject_installs(tmp_path, monkeypatch):
    """A wheel installs config/carriers/*.toml as data files (share/cdr-ingest/carriers under its prefix);
    init reads them there when there is no source tree beside the package."""
    import ingest.init

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["data-files"] == {ingest.init.INSTALLED_CARRIERS: ["config/carriers/*.toml"]}
    installed = tmp_path / "prefix" / ingest.init.INSTALLED_CARRIERS
    shutil.copytree(REPO / "config" / "carriers", installed)
    monkeypatch.setattr(ingest.init, "BUILTIN_CARRIER_FOLDERS", (tmp_path / "site-packages" / "config", installed))
    done = ingest.init.init(tmp_path / "site")
    assert done.carriers == ("hero", "techconnections")
    monkeypatch.setattr(ingest.init, "BUILTIN_CARRIER_FOLDERS", (tmp_path / "nowhere",))
    with pytest.raises(PermanentError, match="built-in carrier definitions are not installed"):
        ingest.init.init(tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_the_commented_billing_example_reads_once_uncommented(tmp_path):
    """The Billing block `cdr init` writes, its comment marks taken away, is a configuration that loads."""
    site = tmp_path / "site"
    done = run_cdr("init", str(site), cwd=unrelated_dir(tmp_path), env=isolated_env(tmp_path))
    assert done.returncode == 0, done.stderr
    config = site / "cdr.toml"
    text = config.read_text()
    config.write_text(uncommented(text, "# [billing]"))
    loaded = load_config(config, env={})
    assert loaded.billing.currency == "GBP"
    [fixed] = loaded.tariffs["standard"].fixed
    [usage] = loaded.tariffs["standard"].usage
    assert (fixed.charge, str(fixed.amount), usage.increment_seconds) == ("pro-rata", "12.00", 60)


def test_the_commented_network_example_reads_once_uncommented(tmp_path):
    """The "Our own network" block `cdr init` writes, its comment marks taken away, is a configuration that loads:
    a carrier of detail files, a trusted node, the window and where alerts are mailed."""
    site = tmp_path / "site"
    done = run_cdr("init", str(site), cwd=unrelated_dir(tmp_path), env=isolated_env(tmp_path))
    assert done.returncode == 0, done.stderr
    config = site / "cdr.toml"
    config.write_text(uncommented(config.read_text(), "# [carriers.network]"))
    loaded = load_config(config, env={})
    assert loaded.carriers["network"].format == "radius-detail"
    assert [(n.name, n.ip, n.kind) for n in loaded.network.nodes] == [("gw-a", "10.0.0.1", "gateway")]
    assert loaded.network.window_hours == 4 and loaded.network.alerts.mail_to == ("noc@example.com",)


def uncommented(text: str, start: str) -> str:
    """``text`` with its commented block from the line ``start`` to the next section rule (or the end)
    uncommented."""
    begin = text.index(start)
    end = text.find("# ----", begin)
    end = len(text) if end < 0 else end
    block = "".join(line[2:] + "\n" if line.startswith("# ") else line + "\n"
                    for line in text[begin:end].splitlines())
    return text[:begin] + block + text[end:]
