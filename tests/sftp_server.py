"""A real SFTP server for tests: asyncssh on 127.0.0.1 (a free port), in a background thread with its own
event loop, serving ``root`` as its whole file system (asyncssh's ``chroot``).

- password auth (``passwords``: user -> password) and public-key auth (``authorized_keys``: user -> keys);
- an ed25519 host key generated per server (``host_key``), or one given, plus ``extra_host_keys``;
- ``sftp_class``: the :class:`asyncssh.SFTPServer` subclass each new session uses (swap it between passes
  to inject faults); it is built as ``sftp_class(chan, chroot=root)`` and can reach the server object as
  ``self.owner``;
- ``auth_attempts`` records (method, user) of every credential offered, to show none was sent to a host
  whose key was refused.

``stop()`` closes the listener and every connection, waits for them, then stops the loop and joins the
thread: everything with timeouts, no sleeps.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import asyncssh

TIMEOUT = 15


class OwnedSFTPServer(asyncssh.SFTPServer):
    """The default session class; subclasses (fault injection) reach the server object as ``self.owner``.
    ``stop()`` waits until every session has ended (asyncssh closes its open files then)."""

    owner: "SftpServer"

    def exit(self) -> None:
        super().exit()
        self.owner._session_ended(self)


def host_key_line(name: str, key: asyncssh.SSHKey) -> str:
    """One known_hosts line: ``name keytype base64``."""
    keytype, blob = key.export_public_key("openssh").decode().split()[:2]
    return f"{name} {keytype} {blob}\n"


class SftpServer:
    def __init__(self, root: Path, *, passwords: dict[str, str] | None = None,
                 authorized_keys: dict[str, list[asyncssh.SSHKey]] | None = None,
                 host_key: asyncssh.SSHKey | None = None, extra_host_keys: list[asyncssh.SSHKey] = ()):
        self.root = Path(root)
        self.passwords = dict(passwords or {})
        self.authorized_keys = {user: [k.public_data for k in keys] for user, keys in (authorized_keys or {}).items()}
        self.host_key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        self.extra_host_keys = list(extra_host_keys)  # offered too, after host_key
        self.sftp_class: type[OwnedSFTPServer] = OwnedSFTPServer
        self.auth_attempts: list[tuple[str, str]] = []
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._sessions: set[OwnedSFTPServer] = set()
        self._no_sessions: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-sftp-server", daemon=True)
        self._listener = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> "SftpServer":
        self._thread.start()
        self._listener = self._call(self._listen())
        self.port = self._listener.get_port()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self._call(self._close())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "SftpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(TIMEOUT)

    async def _listen(self):
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        return await asyncssh.listen(
            self.host, 0, server_host_keys=[self.host_key, *self.extra_host_keys], server_factory=lambda: _Server(self),
            sftp_factory=self._sftp_session, allow_scp=False, line_editor=False,
        )

    def _sftp_session(self, chan) -> asyncssh.SFTPServer:
        session = self.sftp_class(chan, chroot=os.fsencode(self.root))
        session.owner = self
        self._sessions.add(session)
        self._no_sessions.clear()
        return session

    def _session_ended(self, session: OwnedSFTPServer) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._no_sessions.set()

    async def _close(self) -> None:
        self._listener.close()
        await self._listener.wait_closed()
        await self.drop_connections_async()

    async def drop_connections_async(self) -> None:
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            await asyncio.wait_for(conn.wait_closed(), TIMEOUT)
        await asyncio.wait_for(self._no_sessions.wait(), TIMEOUT)  # sessions clean up after their connection

    def drop_connections(self) -> None:
        """Close every open client connection (from outside the server's loop)."""
        self._call(self.drop_connections_async())

    # -- what clients see ---------------------------------------------------------------------------

    def path(self, local: Path) -> str:
        relative = Path(local).relative_to(self.root).as_posix()
        return "/" if relative == "." else "/" + relative

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        return host_key_line(f"[{self.host}]:{self.port}", key or self.host_key)

    @property
    def fingerprint(self) -> str:
        return self.host_key.get_fingerprint("sha256")


class _Server(asyncssh.SSHServer):
    def __init__(self, owner: SftpServer):
        self.owner = owner
        self.conn = None

    def connection_made(self, conn) -> None:
        self.conn = conn
        self.owner._connections.add(conn)

    def connection_lost(self, exc) -> None:
        self.owner._connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        self.owner.auth_attempts.append(("password", username))
        return username in self.owner.passwords and self.owner.passwords[username] == password

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self.owner.auth_attempts.append(("publickey", username))
        return key.public_data in self.owner.authorized_keys.get(username, [])
