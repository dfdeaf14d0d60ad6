"""``kind = "ftp"``, ``"ftps"`` (explicit, AUTH TLS) and ``"ftps-implicit"``: a carrier's FTP server,
collected through the remote-collector contract with aioftp as the client.

- Passive mode only (EPSV, then PASV; the data connection goes to the control connection's host, never to
  an address a server announces).
- FTPS: the certificate is verified against the system store, or ``ca_file``; never unverified. An optional
  ``certificate_sha256`` (hex SHA-256 of the server certificate's DER) pins it on top of that. The data
  channel is always protected (``PBSZ 0`` / ``PROT P``), and every data connection resumes the control
  connection's TLS session (aioftp's ``SSLSessionBoundContext`` binds the control connection's session to
  the data connection), as servers with ``require_ssl_reuse`` (vsftpd) demand. The data connection's TLS
  handshake starts after the server accepted the transfer command (aioftp's own ``get_stream`` handshakes
  before sending it, which deadlocks with vsftpd).
- mtime comes from MLSD/MLST ``modify`` facts (UTC); where a server has no MLSD, from LIST as aioftp parses
  it (minute precision at best).
- aioftp is asyncio; the transport is synchronous and runs it on an event loop it owns (``run_until_complete``
  in the calling thread, so it must not be called from a thread already running an event loop). Downloads
  are streamed in chunks.
- Every aioftp / socket / TLS error is mapped once, here, to TransientError or PermanentError; a password
  never appears in an error, a log line or an origin.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import logging
import posixpath
import socket
import ssl
import time
from pathlib import PurePosixPath
from urllib.parse import quote

import aioftp

from ..errors import CdrError, ConfigError, PermanentError, TransientError
from ..secrets import Secret, require_secret, resolve_secret
from .remote import SERVER_OPTIONS, RemoteCollector, RemoteEntry, Transport

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


def _mapped(exc: BaseException, what: str) -> CdrError:
    """One protocol error as TransientError / PermanentError; ``what`` says where (no secret in it)."""
    if isinstance(exc, CdrError):
        return exc
    if isinstance(exc, aioftp.StatusCodeError):
        code = str(exc.received_codes[-1]) if exc.received_codes else "???"
        info = exc.info if isinstance(exc.info, list) else [exc.info]
        text = " ".join(str(line).strip() for line in info if str(line).strip())[:200]
        reply = f"server replied {code}" + (f" ({text})" if text else "")
        if code == "530":
            return PermanentError(f"{what}: login refused: {reply}")
        if code.startswith("550"):
            return PermanentError(f"{what}: no such file or permission denied: {reply}")
        if code.startswith("4"):
            return TransientError(f"{what}: {reply}")
        return PermanentError(f"{what}: {reply}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(f"{what}: TLS certificate not trusted: {exc.verify_message or exc.reason}")
    if isinstance(exc, ssl.SSLError):
        return TransientError(f"{what}: TLS error: {exc.reason or exc}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, socket.timeout)):
        return TransientError(f"{what}: timed out")
    if isinstance(exc, ConnectionRefusedError):
        return TransientError(f"{what}: connection refused")
    if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError, EOFError)):
        return TransientError(f"{what}: connection lost")
    if isinstance(exc, PermissionError):
        return PermanentError(f"{what}: permission denied")
    if isinstance(exc, OSError):
        return TransientError(f"{what}: {exc.strerror or type(exc).__name__}")
    if isinstance(exc, UnicodeDecodeError):
        return PermanentError(f"{what}: the server sent a line that is not UTF-8")
    if isinstance(exc, aioftp.AIOFTPException):
        return TransientError(f"{what}: {type(exc).__name__}")
    return TransientError(f"{what}: unexpected {type(exc).__name__}")


def _mtime(info: dict) -> int:
    modify = str(info.get("modify") or "")
    try:
        return calendar.timegm(time.strptime(modify[:14], "%Y%m%d%H%M%S"))
    except ValueError:
        return 0


def _checked_path(path: str) -> str:
    if "\r" in path or "\n" in path or "\0" in path:
        raise PermanentError(f"refused a path with line breaks: {path!r}")
    return path


class _Loop:
    """An event loop owned by one transport, run from the calling thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        try:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _close_writer(writer: asyncio.StreamWriter | None, grace: float = 2.0) -> None:
    """Close a stream and wait until its socket is really closed (an aborted TLS transport included)."""
    if writer is None:
        return
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), grace)
    except Exception:  # a broken connection: abort it
        writer.transport.abort()
        await asyncio.sleep(0)


class _Client(aioftp.Client):
    """aioftp's client, keeping hold of every data connection it opens: when the command after ``EPSV``/
    ``PASV`` is refused (``550`` for a missing directory), aioftp leaves that connection open."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.data_writers: list[asyncio.StreamWriter] = []

    async def get_passive_connection(self, *args, **kwargs):
        reader, writer = await super().get_passive_connection(*args, **kwargs)
        self.data_writers.append(writer)
        return reader, writer

    def _control_tls(self):
        stream = self._stream
        return stream.writer.transport.get_extra_info("ssl_object") if stream is not None else None

    async def _open_connection(self, host: str, port: int):
        if self._stream is None:  # the control connection (TLS from the start when implicit)
            return await super()._open_connection(host, port)
        # A data connection: plain TCP here; TLS starts once the server has accepted the command (below).
        return await asyncio.wait_for(asyncio.open_connection(host, port), self.connection_timeout)

    async def get_stream(self, command=None, expected_codes=(), wait_codes=(), censor_after=None,
                         conn_type="I", offset=0):
        """aioftp's ``get_stream``, except that a protected data connection's TLS handshake happens after
        the transfer command was accepted, not before it is sent: servers such as vsftpd accept (and
        handshake on) the data connection only once they have the command, so handshaking first deadlocks.
        The handshake resumes the control connection's TLS session (``require_ssl_reuse``)."""
        reader, writer = await self.get_passive_connection(conn_type)
        if offset:
            await self.command("REST " + str(offset), "350")
        await self.command(command, expected_codes, wait_codes, censor_after)
        control = self._control_tls()
        if control is not None:
            bound = aioftp.common.SSLSessionBoundContext(ssl.PROTOCOL_TLS_CLIENT, context=control.context,
                                                        session=control.session)
            await writer.start_tls(bound, server_hostname=self.server_host,
                                   ssl_handshake_timeout=self.socket_timeout)
        return aioftp.client.DataConnectionThrottleStreamIO(self, reader, writer, throttles={"_": self.throttle},
                                                           timeout=self.socket_timeout)

    async def close_data_connections(self) -> None:
        writers, self.data_writers = self.data_writers, []
        for writer in writers:
            await _close_writer(writer, grace=0.5)


class FtpStream(io.RawIOBase):
    """The bytes of one RETR, read in chunks; a dropped transfer raises TransientError."""

    def __init__(self, transport: "FtpTransport", data, path: str):
        self._transport = transport
        self._data = data
        self._path = path
        self._finished = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._finished or size == 0:
            return b""
        count = CHUNK if size is None or size < 0 else min(size, CHUNK) or 1
        try:
            chunk = self._transport._run(self._data.read(count))
        except Exception as exc:
            # Dropped mid-transfer: the server's reply on the control connection is still owed, so that
            # connection is out of step and not used again in this pass.
            self._finished = True
            self._transport._abandon(self._data)
            self._transport._broken = True
            raise _mapped(exc, f"{self._path}: transfer") from None
        if not chunk:
            # The data connection ended: only the server's 2xx says it ended because the file did.
            self._finished = True
            self._transport._reading = None
            try:
                self._transport._run(self._data.finish())
            except Exception as exc:
                if not isinstance(exc, aioftp.StatusCodeError):
                    self._transport._broken = True
                raise _mapped(exc, f"{self._path}: transfer") from None
        return chunk

    def readinto(self, buffer) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed and not self._finished:
            # Closed before the end: drop the data connection; the control connection is then unusable for
            # this pass (the server still owes a reply), so the transport is closed too.
            self._finished = True
            self._transport._abandon(self._data)
            self._transport._broken = True
        super().close()


class FtpTransport(Transport):
    def __init__(self, loop: _Loop, client: aioftp.Client, where: str):
        self._loop = loop
        self._client = client
        self._where = where
        self._broken = False
        self._reading = None  # the data stream of the download being read, if any

    def _run(self, coro):
        if self._broken:
            coro.close()
            raise TransientError(f"{self._where}: connection lost")
        return self._loop.run(coro)

    def _call(self, what: str, make):
        try:
            return self._run(make())
        except CdrError:
            raise
        except Exception as exc:
            if not isinstance(exc, aioftp.StatusCodeError):
                # A timeout or a dropped connection leaves the control connection out of step (a reply may
                # still be owed): it is not used again.
                self._broken = True
            raise _mapped(exc, what) from None
        finally:
            self._release()

    def _release(self) -> None:
        """Close the data connections of finished commands (all but a download still being read)."""
        client = self._client
        keep = [w for w in client.data_writers if self._reading is not None and w is self._reading.writer]
        done = [w for w in client.data_writers if w not in keep]
        client.data_writers = done
        try:
            self._loop.run(client.close_data_connections())
        except Exception:
            log.debug("closing data connections failed", exc_info=True)
        client.data_writers = keep + client.data_writers

    def _abandon(self, data) -> None:
        self._reading = None
        try:
            self._loop.run(_close_writer(data.writer, grace=0.5))
        except Exception:
            log.debug("closing a data connection failed", exc_info=True)

    def list(self, directory: str) -> list[RemoteEntry]:
        directory = _checked_path(directory)
        base = PurePosixPath(directory)

        async def listing():
            return await self._client.list(directory)

        out = []
        for path, info in self._call(f"{directory}: listing", listing):
            try:
                name = str(PurePosixPath(path).relative_to(base))
            except ValueError:
                name = str(path)  # not under the directory: not a plain name, refused by the collector
            kind = info.get("type")
            out.append(RemoteEntry(name, int(info.get("size") or 0), _mtime(info), kind == "file"))
        return out

    def open(self, path: str):
        path = _checked_path(path)

        async def start():
            self._reading = await self._client.get_stream("RETR " + path, "1xx")
            return self._reading

        data = self._call(f"{path}: download", start)
        return io.BufferedReader(FtpStream(self, data, path), CHUNK)

    def stat(self, path: str) -> RemoteEntry:
        path = _checked_path(path)
        info = self._call(f"{path}: stat", lambda: self._client.stat(path))
        return RemoteEntry(posixpath.basename(path), int(info.get("size") or 0), _mtime(info), info.get("type") == "file")

    def delete(self, path: str) -> None:
        path = _checked_path(path)
        self._call(f"{path}: delete", lambda: self._client.remove_file(path))

    def rename(self, path: str, target: str) -> None:
        path, target = _checked_path(path), _checked_path(target)
        self._call(f"{path}: rename to {target}", lambda: self._client.rename(path, target))

    def close(self) -> None:
        try:
            if not self._broken:
                try:
                    self._loop.run(asyncio.wait_for(self._client.quit(), 5))
                except Exception:
                    log.debug("QUIT failed on %s", self._where, exc_info=True)
            self._reading = None
            self._loop.run(self._client.close_data_connections())
            stream = self._client._stream
            self._loop.run(_close_writer(stream.writer if stream is not None else None))
        finally:
            self._loop.close()


class FtpCollector(RemoteCollector):
    """Plain FTP (no TLS)."""

    kind = "ftp"
    SCHEME = "ftp"
    TLS: str | None = None  # None, "explicit" or "implicit"
    DEFAULT_PORT = 21
    OPTIONS = {**RemoteCollector.COMMON_OPTIONS, **SERVER_OPTIONS}

    @classmethod
    def check_options(cls, spec, config, key: str) -> None:
        super().check_options(spec, config, key)
        require_secret(spec.options, "password", key)
        for option in ("host", "username"):
            value = spec.options[option]
            if not value or any(not ch.isprintable() or ch.isspace() for ch in value):
                raise ConfigError(f"{key}.{option}", "must be non-empty, without spaces or control characters")
        port = spec.options.get("port", cls.DEFAULT_PORT)
        if not 0 < port < 65536:
            raise ConfigError(f"{key}.port", "must be between 1 and 65535")
        if spec.options.get("timeout_seconds", 30) <= 0:
            raise ConfigError(f"{key}.timeout_seconds", "must be positive")
        pin = spec.options.get("certificate_sha256")
        if pin is not None and _normalised_pin(pin) is None:
            raise ConfigError(f"{key}.certificate_sha256", "must be a SHA-256 in hex (64 digits, ':' allowed)")

    def __init__(self, app, spec):
        super().__init__(app, spec)
        self.host = self.option("host")
        self.port = int(self.option("port", self.DEFAULT_PORT))
        self.username = self.option("username")
        self.timeout = float(self.option("timeout_seconds", 30))

    def describe(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.SCHEME}://{quote(self.username, safe='')}@{host}:{self.port}{path}"

    def _tls_context(self) -> ssl.SSLContext | None:
        return None

    def reached(self) -> str:
        tls = "" if self.TLS is None else f"TLS ({self.TLS}) certificate verified, "
        return f"{tls}logged in to {self.describe('/')}"

    def connect(self) -> Transport:
        where = f"{self.SCHEME}://{self.host}:{self.port}"
        password = resolve_secret(self.spec.options, "password") or Secret("")
        context = self._tls_context()
        loop = _Loop()
        client = _Client(
            socket_timeout=self.timeout,
            connection_timeout=self.timeout,
            ssl=context if self.TLS == "implicit" else None,
            passive_commands=("epsv", "pasv"),
        )
        transport = FtpTransport(loop, client, where)
        try:
            loop.run(self._login(client, context, password))
        except Exception as exc:
            try:
                transport._broken = True
                transport.close()
            except Exception:
                log.debug("closing %s failed", where, exc_info=True)
            if isinstance(exc, CdrError):
                raise
            raise _mapped(exc, where) from None
        return transport

    async def _login(self, client: _Client, context: ssl.SSLContext | None, password: Secret) -> None:
        await client.connect(self.host, self.port)
        if self.TLS == "explicit":
            await client.upgrade_to_tls(context)  # AUTH TLS, then PBSZ 0 / PROT P
        if self.TLS is not None:
            self._check_pin(client)
        await client.login(self.username, password.reveal())
        if self.TLS == "implicit":
            await client.command("PBSZ 0", "200")
            await client.command("PROT P", "200")

    def _check_pin(self, client: aioftp.Client) -> None:
        pin = self.option("certificate_sha256")
        if pin is None:
            return
        ssl_object = client.stream.writer.transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None or hashlib.sha256(der).hexdigest() != _normalised_pin(pin):
            raise PermanentError(f"{self.host}:{self.port}: TLS certificate does not match certificate_sha256")


class FtpsCollector(FtpCollector):
    """Explicit FTPS: AUTH TLS on the control connection, PROT P on every data connection."""

    kind = "ftps"
    SCHEME = "ftps"
    TLS = "explicit"
    DEFAULT_PORT = 21
    OPTIONS = {**FtpCollector.OPTIONS, "ca_file": (str, False), "certificate_sha256": (str, False)}

    @classmethod
    def check_options(cls, spec, config, key: str) -> None:
        super().check_options(spec, config, key)
        ca_file = spec.options.get("ca_file")
        if ca_file is not None:
            try:
                ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError):
                raise ConfigError(f"{key}.ca_file", f"not a readable CA file: {ca_file!r}") from None

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.option("ca_file")
        try:
            # Verified, with host name checking; never CERT_NONE.
            return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        except (OSError, ssl.SSLError):
            raise PermanentError(f"cannot load the CA file {ca_file!r}") from None


class FtpsImplicitCollector(FtpsCollector):
    """Implicit FTPS: TLS from the first byte (port 990 by default)."""

    kind = "ftps-implicit"
    SCHEME = "ftps"
    TLS = "implicit"
    DEFAULT_PORT = 990


def _normalised_pin(pin) -> str | None:
    if not isinstance(pin, str):
        return None
    value = pin.replace(":", "").strip().lower()
    if len(value) != 64 or any(ch not in "0123456789abcdef" for ch in value):
        return None
    return value
