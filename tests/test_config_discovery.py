"""Never run on the wrong catalog without saying so: which configuration file is used (first found wins), what
happens when there is none, relative paths taken from the file's folder, and database URLs refused in one line.

The ``cdr`` command runs as a real process from an unrelated working directory; ``HOME`` and
``CDR_SYSTEM_CONFIG_DIR`` point into the test's folder, so no real ``~/.config`` or ``/etc`` file is found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from ingest.app import App
from ingest.catalog.db import DatabaseUrlError
from ingest.config import ConfigNotFound, config_search_path, load_config
from tests.records import record, render

REPO = Path(__file__).resolve().parent.parent
CDR = str(Path(sys.executable).with_name("cdr"))


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any CDR_* variable, its home and system configuration folder inside
    ``tmp_path``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_")}
    env["HOME"] = str(tmp_path / "home")
    env["CDR_SYSTEM_CONFIG_DIR"] = str(tmp_path / "etc" / "cdr-ingest")
    return {**env, **extra}


def run_cdr(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The installed ``cdr`` command, run in ``cwd``."""
    return subprocess.run([CDR, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def unrelated_dir(tmp_path: Path) -> Path:
    """An empty working directory with nothing of cdr-ingest in it."""
    where = tmp_path / "elsewhere"
    where.mkdir()
    return where


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def drop_a_sample(folder: Path, name: str = "hero_cdr_20261001.csv") -> Path:
    """A Hero file in ``folder``, written an hour ago (so a drop folder takes it at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(render([record(1), record(2)]))
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


@pytest.mark.parametrize("command", [["files"], ["status"], ["load"], ["watch", "--once"], ["show", "1"]])
def test_without_a_configuration_a_command_exits_2_naming_every_place_searched(tmp_path, command):
    cwd = unrelated_dir(tmp_path)
    env = isolated_env(tmp_path)
    done = run_cdr(*command, cwd=cwd, env=env)
    assert (done.returncode, done.stdout) == (2, "")
    line = one_line(done.stderr)
    assert line.startswith("error: no configuration file found") and "cdr init" in line
    for place in ("--config", "$CDR_CONFIG", f"{cwd}/cdr.toml", f"{cwd}/config/cdr.toml",
                  f"{tmp_path}/home/.config/cdr-ingest/cdr.toml", f"{tmp_path}/etc/cdr-ingest/cdr.toml"):
        assert place in line
    assert list(cwd.iterdir()) == []  # no ./var/cdr.sqlite, no empty catalog shown


@pytest.mark.parametrize("args", [["--help"], ["files", "--help"], ["--version"]])
def test_help_and_version_need_no_configuration_and_open_no_catalog(tmp_path, args):
    cwd = unrelated_dir(tmp_path)
    done = run_cdr(*args, cwd=cwd, env=isolated_env(tmp_path))
    assert (done.returncode, done.stderr) == (0, "")
    if args == ["--version"]:
        assert done.stdout.strip().endswith(metadata.version("cdr-ingest"))
    assert list(cwd.iterdir()) == []


def test_the_first_configuration_found_wins_in_the_documented_order(tmp_path, database_url):
    """Six configurations, one in each place, each with its own drop folder source: `watch --source drop-N`
    succeeds only on configuration N. Each place is taken away in turn, and the next one is used."""
    cwd = unrelated_dir(tmp_path)
    places = [tmp_path / "named" / "cdr.toml", tmp_path / "from-env" / "cdr.toml", cwd / "cdr.toml",
              cwd / "config" / "cdr.toml", tmp_path / "home" / ".config" / "cdr-ingest" / "cdr.toml",
              tmp_path / "etc" / "cdr-ingest" / "cdr.toml"]
    for index, place in enumerate(places):
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n[database]\nurl = "{database_url}"\n'
                         f'[staging]\ndir = "staging-{index}"\n'
                         f'[[sources]]\nname = "drop-{index}"\nkind = "dropfolder"\npath = "drop-{index}"\n'
                         'carrier = "hero"\n')
        (place.parent / f"drop-{index}").mkdir()
    for index, place in enumerate(places):
        named = ["--config", str(places[0])] if index == 0 else []
        env = isolated_env(tmp_path, **({"CDR_CONFIG": str(places[1])} if index <= 1 else {}))
        done = run_cdr(*named, "watch", "--once", "--source", f"drop-{index}", cwd=cwd, env=env)
        assert done.returncode == 0, (index, done.stderr)
        if index >= 2:
            place.unlink()
    done = run_cdr("files", cwd=cwd, env=isolated_env(tmp_path))
    assert done.returncode == 2 and "no configuration file found" in done.stderr


def test_a_named_configuration_that_does_not_exist_is_one_line(tmp_path):
    cwd = unrelated_dir(tmp_path)
    done = run_cdr("files", cwd=cwd, env=isolated_env(tmp_path, CDR_CONFIG="missing.toml"))
    assert done.returncode == 1
    assert one_line(done.stderr) == "error: configuration error at missing.toml: configuration file not found"


@pytest.mark.parametrize("source, line", [
    ('kind = "telepathy"\n', "error: configuration error at sources[0].kind: unknown kind 'telepathy' (known: "),
    ('kind = "dropfolder"\n', "error: configuration error at sources[0].path: "),
])
def test_a_source_of_an_unknown_kind_or_with_a_bad_option_is_one_line_at_start(tmp_path, source, line):
    """ingest.config no longer knows the collectors: the sources are checked where the application is assembled
    (ingest.plugins), before any command runs, with the same one line."""
    cwd = unrelated_dir(tmp_path)
    config = tmp_path / "cdr.toml"
    config.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n[[sources]]\nname = "a"\n{source}')
    done = run_cdr("--config", str(config), "files", cwd=cwd, env=isolated_env(tmp_path))
    assert done.returncode == 1 and one_line(done.stderr).startswith(line), done.stderr
    assert not (tmp_path / "var").exists()  # refused before the catalog was opened


def test_relative_paths_are_taken_from_the_configuration_files_folder(tmp_path, database_url):
    """Run from an unrelated directory: the SQLite database, staging and the drop folder are the ones beside
    the configuration file (config/../data, ...), and nothing is created in the working directory."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "config" / "carriers", site / "conf" / "carriers")
    url = "sqlite:///../data/cdr.sqlite" if database_url.startswith("sqlite") else database_url
    config = site / "conf" / "cdr.toml"
    config.write_text(f'include = ["carriers/*.toml"]\n[database]\nurl = "{url}"\n[staging]\ndir = "../staging"\n'
                      '[[sources]]\nname = "hero-drop"\nkind = "dropfolder"\npath = "../drop/hero"\n'
                      'carrier = "hero"\nsettle_seconds = 60\n')
    dropped = drop_a_sample(site / "drop" / "hero")
    cwd = unrelated_dir(tmp_path)
    env = isolated_env(tmp_path, CDR_CONFIG=str(config))
    done = run_cdr("watch", "--once", cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    assert "hero-drop: #1 hero_cdr_20261001.csv: loaded" in done.stdout
    assert not dropped.exists() and (site / "drop" / "hero" / "done" / dropped.name).exists()
    assert (site / "staging" / "blobs").is_dir()
    if database_url.startswith("sqlite"):
        assert (site / "data" / "cdr.sqlite").is_file()  # its folder made: the file's own layout
    assert list(cwd.iterdir()) == []
    # The same catalog, named with --config from yet another directory.
    listing = run_cdr("--config", str(config), "files", "--json", cwd=tmp_path, env=isolated_env(tmp_path))
    assert [row["name"] for row in json.loads(listing.stdout)] == ["hero_cdr_20261001.csv"]


def test_paths_on_this_machine_are_relative_to_the_file_and_paths_on_a_server_are_not(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "secrets").mkdir(parents=True)
    (site / "secrets" / "feed.pw").write_text("pw\n")
    (site / "keys").mkdir()
    (site / "keys" / "known_hosts").write_text("")
    config = site / "cdr.toml"
    config.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n'
                      '[[sources]]\nname = "feed"\nkind = "billing_feed"\nurl = "https://feed.example.net/b.php"\n'
                      'login = "1"\npassword_file = "secrets/feed.pw"\ncarrier = "hero"\ninterval_seconds = 600\n'
                      '[[sources]]\nname = "mail"\nkind = "maildir"\npath = "mail/cdrs"\n'
                      '[[sources]]\nname = "share"\nkind = "directory"\n[[sources.dirs]]\npath = "share/in"\n'
                      'carrier = "hero"\n'
                      '[[sources]]\nname = "sftp"\nkind = "sftp"\nhost = "h.example.net"\nusername = "u"\n'
                      'password_file = "secrets/feed.pw"\nknown_hosts = "keys/known_hosts"\n'
                      '[[sources.dirs]]\npath = "cdr/daily"\ncarrier = "hero"\n'
                      '[smtp]\ndomain = "billing.example.com"\n'
                      'tls_cert_file = "tls/c.pem"\ntls_key_file = "tls/k.pem"\n')
    monkeypatch.chdir(unrelated_dir(tmp_path))
    loaded = load_config(config, env={})
    options = {source.name: source.options for source in loaded.sources}
    # Files checked at start (the password and known_hosts files) are found only beside the configuration.
    assert options["feed"]["password_file"] == f"{site}/secrets/feed.pw"
    assert options["mail"]["path"] == f"{site}/mail/cdrs"
    assert options["share"]["dirs"][0]["path"] == f"{site}/share/in"
    assert options["sftp"]["known_hosts"] == f"{site}/keys/known_hosts"
    assert options["sftp"]["dirs"][0]["path"] == "cdr/daily"  # a path on the server, as given
    assert (loaded.smtp.tls_cert_file, loaded.smtp.tls_key_file) == (f"{site}/tls/c.pem", f"{site}/tls/k.pem")


def test_environment_overrides_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    config = tmp_path / "conf" / "cdr.toml"
    config.parent.mkdir()
    config.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n')
    cwd = unrelated_dir(tmp_path)
    monkeypatch.chdir(cwd)
    loaded = load_config(config, env={"CDR_DATABASE_URL": "sqlite:///here.sqlite", "CDR_STAGING_DIR": "stage"})
    assert (loaded.database_url, loaded.staging_dir) == (f"sqlite:///{cwd}/here.sqlite", cwd / "stage")
    assert (loaded.database_url_origin, loaded.create_database_folder) == ("CDR_DATABASE_URL", False)
    default = load_config(config, env={})  # no [database]: var/cdr.sqlite beside the file, its folder made
    assert default.database_url == f"sqlite:///{config.parent}/var/cdr.sqlite" and default.create_database_folder


@pytest.mark.parametrize("url, reason", [
    ("nonsense", "cannot parse the database URL"),
    ("postgresql://cdr:s3cret-pw@127.0.0.1:notaport/cdr", "cannot parse the database URL"),
    ("mysql://cdr:s3cret-pw@127.0.0.1/cdr", "unsupported database driver 'mysql' in mysql://cdr:***@127.0.0.1/cdr"),
    ("sqlite:///missing/cdr.sqlite", "the folder of the SQLite database {cwd}/missing/cdr.sqlite does not exist"),
    ("sqlite:///{tmp}/missing/deeper/cdr.sqlite",
     "the folder of the SQLite database {tmp}/missing/deeper/cdr.sqlite does not exist"),
])
def test_a_bad_database_url_is_one_line_and_creates_nothing(tmp_path, url, reason):
    cwd = unrelated_dir(tmp_path)
    (cwd / "cdr.toml").write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n')
    env = isolated_env(tmp_path, CDR_DATABASE_URL=url.format(tmp=tmp_path))
    done = run_cdr("files", cwd=cwd, env=env)
    assert (done.returncode, done.stdout) == (1, "")
    assert one_line(done.stderr).startswith(f"error: CDR_DATABASE_URL: {reason.format(cwd=cwd, tmp=tmp_path)}")
    assert "s3cret-pw" not in done.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["cdr.toml"] and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("what, reason", [
    ("a folder", "the SQLite database {path} is a folder, not a file"),
    ("not a database", "cannot use the SQLite database {path}: file is not a database"),
])
def test_a_sqlite_url_naming_something_that_is_not_a_database_is_one_line(tmp_path, what, reason):
    cwd = unrelated_dir(tmp_path)
    (cwd / "cdr.toml").write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n')
    path = tmp_path / "catalog"
    if what == "a folder":
        path.mkdir()
    else:
        path.write_bytes(b"these are not the pages of an SQLite database\n" * 200)
    before = path.is_dir() or path.read_bytes()
    done = run_cdr("files", cwd=cwd, env=isolated_env(tmp_path, CDR_DATABASE_URL=f"sqlite:///{path}"))
    assert (done.returncode, done.stdout) == (1, "")
    assert one_line(done.stderr) == f"error: CDR_DATABASE_URL: {reason.format(path=path)}"
    assert (path.is_dir() or path.read_bytes()) == before  # nothing written over it


def test_a_configured_absolute_sqlite_path_into_a_missing_folder_is_refused(tmp_path):
    config = tmp_path / "cdr.toml"
    config.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n'
                      f'[database]\nurl = "sqlite:///{tmp_path}/typo/cdr.sqlite"\n')
    app = App(load_config(config, env={}), actor="tester")
    with pytest.raises(DatabaseUrlError, match=f"^database.url in {config}: the folder of the SQLite database "
                                               f"{tmp_path}/typo/cdr.sqlite does not exist"):
        app.catalog
    assert not (tmp_path / "typo").exists()


def test_load_config_without_a_file_anywhere_raises_config_not_found(tmp_path, monkeypatch):
    monkeypatch.chdir(unrelated_dir(tmp_path))
    with pytest.raises(ConfigNotFound) as caught:
        load_config(env=isolated_env(tmp_path))
    assert caught.value.searched == tuple(config_search_path(isolated_env(tmp_path)))


@pytest.mark.parametrize("linked_from", ["home", "--config"])
def test_a_linked_configuration_takes_its_relative_paths_from_the_folder_it_really_is_in(tmp_path, linked_from):
    install = tmp_path / "srv"
    assert run_cdr("init", str(install), cwd=unrelated_dir(tmp_path), env=isolated_env(tmp_path)).returncode == 0
    home_config = tmp_path / "home" / ".config" / "cdr-ingest" / "cdr.toml"
    home_config.parent.mkdir(parents=True)
    home_config.symlink_to(install / "cdr.toml")
    sample = tmp_path / "hero_cdr_20261001.csv"
    sample.write_bytes(render([record(1)]))
    env = isolated_env(tmp_path)
    where = ["--config", str(home_config)] if linked_from == "--config" else []
    cwd = tmp_path / "elsewhere"

    assert run_cdr(*where, "upload", str(sample), "--carrier", "hero", "--type", "cdr", cwd=cwd, env=env).returncode == 0

    assert (install / "var" / "cdr.sqlite").exists()  # the installation's catalog, not one beside the link
    assert not (home_config.parent / "var").exists()


def test_a_removed_working_directory_is_no_traceback(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    # A shell whose directory was removed under it, then cdr: the search skips "here" and says where it looked.
    done = subprocess.run(["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "{CDR}" files'],
                          env=isolated_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and one_line(done.stderr).startswith("error: no configuration file found")
