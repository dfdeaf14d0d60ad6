"""``kind = "directory"`` (a mounted share), through the remote-collector contract."""

from __future__ import annotations

import ctypes
import json
import os
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest

from tests.remote_contract import RemoteContract, dirs_toml


class MountedShare:
    def __init__(self, root: Path):
        self.root = root

    def path(self, local: Path) -> str:
        return str(local)

    @contextmanager
    def denied(self, local: Path):
        """No read permission on ``local``; when the tests run as root, this thread also gives up reading past
        permissions (its effective CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH) meanwhile."""
        mode = local.stat().st_mode
        local.chmod(0)
        try:
            with _without_dac_override() if os.geteuid() == 0 else nullcontext():
                yield
        finally:
            local.chmod(mode)

    def source_toml(self, name: str, dirs: list[dict], **options) -> str:
        lines = ["[[sources]]", f"name = {json.dumps(name)}", 'kind = "directory"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
        return "\n".join(lines) + "\n" + dirs_toml(dirs)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextmanager
def _without_dac_override():
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the calling thread's effective set (Linux: capset
    acts on one thread; they stay permitted, so they are raised again afterwards)."""
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    assert libc.capget(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())
    effective = data[0].effective
    data[0].effective &= ~((1 << 1) | (1 << 2))
    assert libc.capset(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())
    try:
        yield
    finally:
        data[0].effective = effective
        assert libc.capset(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())


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
