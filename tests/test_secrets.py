"""Secrets are never inline in the configuration, never shown."""

from __future__ import annotations

import pytest

from ingest.errors import ConfigError
from ingest.secrets import Secret, check_secret, resolve_secret


def test_environment_reference_and_file(tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    env = {"HERO_PW": "from-env"}
    assert resolve_secret({"password": "${HERO_PW}"}, "password", env).reveal() == "from-env"
    assert resolve_secret({"password_file": str(secret_file)}, "password", env).reveal() == "from-file"
    assert resolve_secret({}, "password", env) is None


@pytest.mark.parametrize("options, key, reason", [
    ({"password": "Monkey123"}, "s.password", "not written in the file"),
    ({"password": "${NOT_SET}"}, "s.password", "NOT_SET is not set"),
    ({"password_file": "/nonexistent/pw"}, "s.password_file", "not a readable file"),
    ({"password": "${HERO_PW}", "password_file": "/etc/hostname"}, "s.password", "not both"),
])
def test_bad_secrets_are_refused_at_start(options, key, reason):
    with pytest.raises(ConfigError) as caught:
        check_secret(options, "password", "s", env={"HERO_PW": "x"})
    assert caught.value.key == key and reason in caught.value.reason
    assert "Monkey123" not in str(caught.value)


def test_a_secret_never_shows_its_value():
    secret = Secret("Monkey123")
    assert "Monkey123" not in repr(secret) and "Monkey123" not in str(secret) and "Monkey123" not in f"{secret}"
    assert "Monkey123" not in repr({"password": secret})
