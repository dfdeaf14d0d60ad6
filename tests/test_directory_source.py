"""``kind = "directory"`` (a mounted share), through the remote-collector contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.remote_contract import RemoteContract, dirs_toml


class MountedShare:
    def __init__(self, root: Path):
        self.root = root

    def path(self, local: Path) -> str:
        return str(local)

    def source_toml(self, name: str, dirs: list[dict], **options) -> str:
        lines = ["[[sources]]", f"name = {json.dumps(name)}", 'kind = "directory"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
        return "\n".join(lines) + "\n" + dirs_toml(dirs)


@pytest.fixture
def remote(tmp_path):
    root = tmp_path / "share"
    root.mkdir()
    return MountedShare(root)


class TestDirectorySource(RemoteContract):
    pass


def test_a_missing_share_is_a_transient_error_reported_by_the_pass(make_config, tmp_path):
    from ingest.collectors import collector_for
    from tests.conftest import app_with

    share = MountedShare(tmp_path / "not-mounted")
    app = app_with(make_config, share.source_toml("remote", [{"path": str(share.root), "carrier": "hero"}]))
    try:
        result = collector_for(app, app.config.source("remote")).collect()
        assert result.received == [] and "not-mounted" in result.errors[0]
    finally:
        app.close()
