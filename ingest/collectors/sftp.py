"""``kind = "sftp"``: a carrier's SFTP server, collected through the remote-collector contract (paramiko).

Host keys are always verified, before any credential is sent: either against a ``known_hosts`` file or
against a pinned ``host_key_fingerprint`` (``SHA256:...`` as ``ssh-keygen -lf`` prints it). An unknown or
changed host key is refused (PermanentError naming the host and the offered key's fingerprint); nothing is
ever added to a known_hosts file.

Authentication: a password (``password = "${ENV}"`` or ``password_file``) and/or a private key
(``private_key_file``; ed25519, ECDSA or RSA, optionally protected by ``private_key_passphrase`` /
``private_key_passphrase_file``). With both, the key is tried first.

Every paramiko / socket error is mapped here, once, to TransientError (refused, lost, timed out, dropped
mid-transfer, generic server failure) or PermanentError (authentication refused, host key unknown or
changed, permission denied, no such file). No secret appears in any message or in ``describe``.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import posixpath
import re
import socket
import stat as stat_module
from pathlib import Path
from typing import BinaryIO

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import CdrError, ConfigError, PermanentError, TransientError
from ..secrets import check_secret, resolve_secret
from .remote import SERVER_OPTIONS, RemoteCollector, RemoteEntry, Transport

log = logging.getLogger(__name__)

_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")
# Requests in flight while downloading are bounded by the SSH channel window (paramiko's prefetch queues
# the read requests; the server answers as the window allows).
READ_SIZE = 1 << 20


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:<base64, unpadded>`` of a public key, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def load_private_key(path: str, passphrase: bytes | None) -> paramiko.PKey:
    """An ed25519, ECDSA or RSA private key (OpenSSH or PEM format, maybe passphrase-protected).

    ECDSA and RSA keys are decoded by ``cryptography`` and handed to paramiko as key objects: paramiko's own
    OpenSSH-format ECDSA parser refuses about half of the valid keys written without a comment (as
    asyncssh and ``ssh-keygen -C ""`` write them) with "Invalid key curve identifier"."""
    data = Path(path).read_bytes()
    try:
        loaded = serialization.load_ssh_private_key(data, passphrase)
    except ValueError:
        loaded = serialization.load_pem_private_key(data, passphrase)
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        return paramiko.ECDSAKey(vals=(loaded, loaded.public_key()))
    if isinstance(loaded, rsa.RSAPrivateKey):
        return paramiko.RSAKey(key=loaded)
    return paramiko.PKey.from_path(path, passphrase)  # ed25519 (and whatever else paramiko knows)


def _mapped(exc: BaseException, what: str) -> CdrError:
    """One paramiko/socket/SFTP error as TransientError or PermanentError (``what`` names the operation)."""
    if isinstance(exc, CdrError):
        return exc
    if isinstance(exc, paramiko.AuthenticationException):
        return PermanentError(f"{what}: authentication refused")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientError(f"{what}: timed out")
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return PermanentError(f"{what}: no such file or directory")
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
        return PermanentError(f"{what}: permission denied")
    if isinstance(exc, OSError) and exc.errno is not None and getattr(exc, "strerror", None):
        return TransientError(f"{what}: {exc.strerror}")
    if isinstance(exc, EOFError):
        return TransientError(f"{what}: connection closed by the server")
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TransientError(f"{what}: {detail}")


class _Download:
    """The readable stream ``SftpTransport.open`` returns: reads map every error to TransientError /
    PermanentError (never a socket or paramiko error)."""

    def __init__(self, handle: paramiko.SFTPFile, what: str, size: int, ssh: paramiko.Transport):
        self._handle = handle
        self._what = what
        self._size = size
        self._ssh = ssh
        self._position = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._handle.read(READ_SIZE if n is None or n < 0 else n)
        except Exception as exc:  # noqa: BLE001 - every error is mapped, once, here
            raise _mapped(exc, f"{self._what}: transfer interrupted") from exc
        self._position += len(data)
        if not data:
            # paramiko's reads take an EOFError raised while *sending* a request on a dead connection
            # for the end of the file: a dropped connection must not pass for a complete transfer.
            if not self._ssh.is_active():
                raise TransientError(f"{self._what}: transfer interrupted: connection lost")
            if self._position < self._size:
                raise TransientError(f"{self._what}: transfer ended after {self._position} of {self._size} bytes")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            handle.close()
        except Exception as exc:  # noqa: BLE001
            raise _mapped(exc, f"{self._what}: closing") from exc

    def __enter__(self) -> "_Download":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an error is already on its way: closing a broken transfer must not hide it
            self.close()
        except CdrError:
            log.debug("closing %s after an error failed", self._what, exc_info=True)


def _quiet_prefetch(handle: paramiko.SFTPFile) -> None:
    """paramiko sends prefetch requests from a helper thread; when the connection drops, that thread's
    send fails with an uncaught exception (printed to stderr). The reader sees the failure anyway (as a
    dropped connection), so the helper thread's error is logged at debug level instead."""
    original = getattr(handle, "_prefetch_thread", None)
    if original is None:
        return

    def quiet(*args, **kwargs):
        try:
            original(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the reading side reports the dropped connection
            log.debug("sftp prefetch stopped", exc_info=True)

    handle._prefetch_thread = quiet


class SftpTransport(Transport):
    def __init__(self, ssh: paramiko.Transport, sftp: paramiko.SFTPClient, where: str):
        self._ssh = ssh
        self._sftp = sftp
        self._where = where

    def _what(self, path: str) -> str:
        return f"{self._where}{path}"

    def list(self, directory: str) -> list[RemoteEntry]:
        try:
            attrs = self._sftp.listdir_attr(directory)
        except Exception as exc:  # noqa: BLE001
            raise _mapped(exc, f"listing {self._what(directory)}") from exc
        return [_entry(a.filename, a) for a in attrs]

    def open(self, path: str) -> BinaryIO:
        what = self._what(path)
        try:
            handle = self._sftp.open(path, "rb", bufsize=READ_SIZE)
        except Exception as exc:  # noqa: BLE001
            raise _mapped(exc, what) from exc
        try:
            size = handle.stat().st_size
            _quiet_prefetch(handle)
            handle.prefetch(size)
        except Exception as exc:  # noqa: BLE001
            try:
                handle.close()
            except Exception:  # noqa: BLE001
                log.debug("closing %s failed", what, exc_info=True)
            raise _mapped(exc, what) from exc
        return _Download(handle, what, size, self._ssh)  # type: ignore[return-value]

    def stat(self, path: str) -> RemoteEntry:
        try:
            attrs = self._sftp.stat(path)
        except Exception as exc:  # noqa: BLE001
            raise _mapped(exc, self._what(path)) from exc
        return _entry(path.rsplit("/", 1)[-1], attrs)

    def delete(self, path: str) -> None:
        try:
            self._sftp.remove(path)
        except Exception as exc:  # noqa: BLE001
            raise _mapped(exc, f"deleting {self._what(path)}") from exc

    def rename(self, path: str, target: str) -> None:
        try:
            try:
                self._sftp.stat(target)
            except FileNotFoundError:
                pass
            else:
                raise PermanentError(f"cannot move {self._what(path)}: {target} exists")
            self._make_dirs(posixpath.dirname(target))
            self._sftp.rename(path, target)
        except Exception as exc:  # noqa: BLE001
            raise _mapped(exc, f"moving {self._what(path)} to {target}") from exc

    def _make_dirs(self, directory: str) -> None:
        """``mkdir -p`` (as the directory transport does for ``move_to``)."""
        if directory in ("", "/", "."):
            return
        try:
            if stat_module.S_ISDIR(self._sftp.stat(directory).st_mode or 0):
                return
        except FileNotFoundError:
            pass
        else:
            raise PermanentError(f"{self._what(directory)} exists and is not a directory")
        self._make_dirs(posixpath.dirname(directory))
        try:
            self._sftp.mkdir(directory)
        except OSError:
            if not stat_module.S_ISDIR(self._sftp.stat(directory).st_mode or 0):  # made meanwhile: fine
                raise

    def close(self) -> None:
        try:
            self._sftp.close()
        except Exception:  # noqa: BLE001 - a connection already gone cannot be closed politely
            log.debug("closing sftp on %s failed", self._where, exc_info=True)
        finally:
            self._ssh.close()


def _entry(name: str, attrs: paramiko.SFTPAttributes) -> RemoteEntry:
    mode = attrs.st_mode
    is_file = mode is None or stat_module.S_ISREG(mode)
    return RemoteEntry(name, int(attrs.st_size or 0), int(attrs.st_mtime or 0), is_file)


class SftpCollector(RemoteCollector):
    kind = "sftp"
    OPTIONS = dict(RemoteCollector.COMMON_OPTIONS)
    OPTIONS.update({
        **SERVER_OPTIONS,
        "private_key_file": (str, False),
        "private_key_passphrase": (str, False),
        "private_key_passphrase_file": (str, False),
        "known_hosts": (str, False),
        "host_key_fingerprint": (str, False),
    })

    @classmethod
    def check_options(cls, spec, config, key: str) -> None:
        super().check_options(spec, config, key)
        options = spec.options
        if not options["host"].strip():
            raise ConfigError(f"{key}.host", "must not be empty")
        if not 1 <= options.get("port", 22) <= 65535:
            raise ConfigError(f"{key}.port", "must be between 1 and 65535")
        if not options["username"]:
            raise ConfigError(f"{key}.username", "must not be empty")
        if options.get("timeout_seconds", 30) <= 0:
            raise ConfigError(f"{key}.timeout_seconds", "must be positive")
        check_secret(options, "password", key)
        check_secret(options, "private_key_passphrase", key)
        has_password = "password" in options or "password_file" in options
        key_file = options.get("private_key_file")
        if not has_password and key_file is None:
            raise ConfigError(f"{key}.password", "an sftp source needs a password (or password_file) or a private_key_file")
        if key_file is not None and not Path(key_file).is_file():
            raise ConfigError(f"{key}.private_key_file", f"not a readable file: {key_file!r}")
        if key_file is None and ("private_key_passphrase" in options or "private_key_passphrase_file" in options):
            raise ConfigError(f"{key}.private_key_passphrase", "given without a private_key_file")
        known_hosts, pinned = options.get("known_hosts"), options.get("host_key_fingerprint")
        if known_hosts is None and pinned is None:
            raise ConfigError(f"{key}.known_hosts", "host keys are always verified: give known_hosts or host_key_fingerprint")
        if known_hosts is not None and pinned is not None:
            raise ConfigError(f"{key}.host_key_fingerprint", "give known_hosts or host_key_fingerprint, not both")
        if known_hosts is not None and not Path(known_hosts).is_file():
            raise ConfigError(f"{key}.known_hosts", f"not a readable file: {known_hosts!r}")
        if pinned is not None and not _FINGERPRINT.match(pinned):
            raise ConfigError(f"{key}.host_key_fingerprint", "must look like SHA256:<43 base64 characters> (as ssh-keygen -lf prints)")

    def __init__(self, app, spec):
        super().__init__(app, spec)
        self.host = self.option("host").strip()
        self.port = int(self.option("port", 22))
        self.username = self.option("username")
        self.timeout = float(self.option("timeout_seconds", 30))

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.username}@{host}:{self.port}"

    def describe(self, path: str) -> str:
        return f"sftp://{self._netloc}{path if path.startswith('/') else '/' + path}"

    def reached(self) -> str:
        return f"host key verified, logged in to sftp://{self._netloc}"

    # -- connecting ---------------------------------------------------------------------------------

    def connect(self) -> Transport:
        where = f"sftp://{self._netloc}"
        private_key = self._private_key()  # a bad key file is refused before anything goes on the wire
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            raise _mapped(exc, f"connecting to {where}") from exc
        try:
            ssh = paramiko.Transport(sock)
        except Exception as exc:  # noqa: BLE001
            sock.close()
            raise _mapped(exc, f"connecting to {where}") from exc
        try:
            ssh.banner_timeout = self.timeout
            ssh.auth_timeout = self.timeout
            ssh.handshake_timeout = self.timeout
            self._prefer_known_key_types(ssh)
            try:
                ssh.start_client(timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001
                raise _mapped(exc, f"connecting to {where}") from exc
            if not ssh.is_active() or not ssh.initial_kex_done:  # start_client returns quietly on timeout
                raise TransientError(f"connecting to {where}: no SSH handshake within {self.timeout:g}s")
            self._verify_host_key(ssh.get_remote_server_key())  # before any credential is sent
            self._authenticate(ssh, private_key, where)
            try:
                sftp = paramiko.SFTPClient.from_transport(ssh)
                if sftp is None:
                    raise TransientError(f"{where}: the server refused the sftp subsystem")
                sftp.get_channel().settimeout(self.timeout)
            except Exception as exc:  # noqa: BLE001
                raise _mapped(exc, f"opening sftp on {where}") from exc
        except BaseException:
            ssh.close()
            sock.close()  # Transport.close() leaves the socket open when the handshake never completed
            raise
        return SftpTransport(ssh, sftp, where)

    def _private_key(self) -> paramiko.PKey | None:
        path = self.option("private_key_file")
        if path is None:
            return None
        passphrase = resolve_secret(self.spec.options, "private_key_passphrase")
        try:
            return load_private_key(path, passphrase.reveal().encode() if passphrase else None)
        except OSError as exc:
            raise PermanentError(f"cannot read private key {path}: {exc.strerror or exc}") from None
        except (paramiko.PasswordRequiredException, TypeError) if passphrase is None else ():
            # (cryptography says so with a TypeError for OpenSSH-format keys)
            raise PermanentError(f"private key {path} is protected: give private_key_passphrase") from None
        except Exception as exc:  # noqa: BLE001 - wrong passphrase, unknown type, damaged file
            reason = "wrong passphrase or unsupported key" if passphrase else "unsupported or damaged key"
            raise PermanentError(f"cannot load private key {path}: {reason} ({type(exc).__name__})") from None

    def _host_key_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _known_keys(self) -> dict[str, paramiko.PKey] | None:
        known_hosts = self.option("known_hosts")
        if known_hosts is None:
            return None
        try:
            keys = paramiko.HostKeys(known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            raise PermanentError(f"cannot read known_hosts {known_hosts}: {exc}") from None
        found = keys.lookup(self._host_key_name())
        return dict(found) if found is not None else {}

    def _prefer_known_key_types(self, ssh: paramiko.Transport) -> None:
        """Ask first for the host key type known_hosts holds, so a server with several keys offers that one."""
        known = self._known_keys()
        if not known:
            return
        wanted = set(known)
        if "ssh-rsa" in wanted:
            wanted |= {"rsa-sha2-512", "rsa-sha2-256"}
        options = ssh.get_security_options()
        options.key_types = [t for t in options.key_types if t in wanted] + [t for t in options.key_types if t not in wanted]

    def _verify_host_key(self, offered: paramiko.PKey) -> None:
        name = self._host_key_name()
        shown = f"{offered.get_name()} {fingerprint(offered)}"
        pinned = self.option("host_key_fingerprint")
        if pinned is not None:
            if fingerprint(offered).rstrip("=") != pinned.rstrip("="):
                raise PermanentError(f"host key of {name} does not match the pinned host_key_fingerprint "
                                     f"(server offered {shown}); refusing to connect")
            return
        known = self._known_keys() or {}
        if not known:
            raise PermanentError(f"host key of {name} is unknown: not in known_hosts {self.option('known_hosts')} "
                                 f"(server offered {shown}); refusing to connect")
        if any(key == offered for key in known.values()):
            return
        raise PermanentError(f"host key of {name} has CHANGED: known_hosts {self.option('known_hosts')} holds a "
                             f"different key (server offered {shown}); refusing to connect")

    def _authenticate(self, ssh: paramiko.Transport, private_key: paramiko.PKey | None, where: str) -> None:
        password = resolve_secret(self.spec.options, "password")
        failure: BaseException | None = None
        attempts = []  # the key first, then the password
        if private_key is not None:
            attempts.append(lambda: ssh.auth_publickey(self.username, private_key))
        if password is not None:
            attempts.append(lambda: ssh.auth_password(self.username, password.reveal()))
        for attempt in attempts:
            try:
                attempt()
                if ssh.is_authenticated():
                    return
            except paramiko.AuthenticationException as exc:
                failure = exc
            except Exception as exc:  # noqa: BLE001
                raise _mapped(exc, f"authenticating to {where}") from exc
        methods = " and ".join(m for m, given in (("key", private_key), ("password", password)) if given)
        raise PermanentError(f"authentication refused by {where} ({methods})") from failure
