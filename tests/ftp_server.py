"""A real FTP / FTPS server for tests: pyftpdlib on 127.0.0.1, a free port, in a background thread.

- ``mode``: ``"ftp"`` (plain), ``"ftps"`` (explicit: TLS required on control and data) or ``"ftps-implicit"``
  (TLS from the first byte: pyftpdlib has no implicit mode, so the handler secures the socket as soon as it
  is accepted, before the greeting, and the client then sends PBSZ/PROT as usual).
- FTPS data connections must resume the control connection's TLS session, like vsftpd with
  ``require_ssl_reuse=YES``: a data connection that does not is refused (``522``) and counted in
  ``tls_data_fresh``; resumed ones in ``tls_data_reused``.
- Faults, set by tests: ``faults["RETR"] = n`` drops the next download's data connection (TCP reset) after
  ``n`` bytes and answers ``426``; ``faults["MLSD"] = "first-line"`` does the same to the next listing after
  its first line. Each fault fires once.
- ``mlsd=False``: a server without MLSD/MLST, so clients fall back to LIST.
- Certificates from trustme; ``ca`` is the authority a trusting client is given.
"""

from __future__ import annotations

import socket
import struct
import threading
import warnings
from pathlib import Path

import trustme
from OpenSSL import SSL
from OpenSSL._util import lib as _ssl_lib

with warnings.catch_warnings():
    # pyftpdlib (the test server, not the client) is built on asyncore/asynchat, which Python 3.11 deprecates
    # at import time: that one warning is ignored here, for this import only.
    warnings.filterwarnings("ignore", message=r"The (asyncore|asynchat) module is deprecated",
                            category=DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

USER = "carrier"
PASSWORD = "s3cret-Pa55word"


def _faulty_dtp(base: type) -> type:
    class FaultyDTP(base):
        _dropping = False

        def send(self, data):
            if self._dropping:
                return 0
            faults = self.cmd_channel.server.faults
            cmd = self.cmd_channel.dtp_command
            limit = faults.get(cmd)
            if limit is None:
                return super().send(data)
            if limit == "first-line":
                limit = data.index(b"\n") + 1 if b"\n" in data else len(data)
                faults[cmd] = limit
            allowed = max(0, limit - self.tot_bytes_sent)
            sent = super().send(data[:allowed]) if allowed else 0
            if self.tot_bytes_sent >= limit:
                faults.pop(cmd, None)
                self._dropping = True
                self.ioloop.call_later(0, self._drop)
            return sent

        def _drop(self):
            try:  # a reset, not an orderly close: the client sees the connection lost mid-transfer
                raw = self.socket
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except Exception:
                pass
            self._resp = ("426 Connection closed; transfer aborted.", lambda *a, **k: None)
            self.transfer_finished = False
            base.close(self)

    return FaultyDTP


class _ReuseCheckingDTP(_faulty_dtp(TLS_DTPHandler)):
    def handle_ssl_established(self):
        server = self.cmd_channel.server
        if _ssl_lib.SSL_session_reused(self.socket._ssl):
            server.tls_data_reused += 1
        else:
            server.tls_data_fresh += 1
            self._resp = ("522 SSL connection failed: session reuse required", lambda *a, **k: None)
            self.close()


class _CommandNoting:
    """Notes which command a data connection serves before any byte of it is sent (pyftpdlib sets the data
    channel's ``cmd`` only after it started sending)."""

    dtp_command = None

    def push_dtp_data(self, data, isproducer=False, file=None, cmd=None):
        self.dtp_command = cmd
        return super().push_dtp_data(data, isproducer=isproducer, file=file, cmd=cmd)


class _ImplicitTLSHandler(TLS_FTPHandler):
    def handle(self):
        self.secure_connection(self.ssl_context)
        super().handle()


class FtpTestServer:
    def __init__(self, root: Path, mode: str = "ftp", certificate_dir: Path | None = None,
                 tls_max_version: int | None = None, mlsd: bool = True):
        self.root = root
        self.mode = mode
        self.ca = None
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
        if mode == "ftp":
            handler = type("Handler", (_CommandNoting, FTPHandler), {"dtp_handler": _faulty_dtp(DTPHandler)})
        else:
            self.ca = trustme.CA()
            cert = self.ca.issue_cert("127.0.0.1", "localhost")
            certificate_dir = certificate_dir or root.parent
            self.ca_file = certificate_dir / "ftp-ca.pem"
            self.ca.cert_pem.write_to_path(str(self.ca_file))
            chain = certificate_dir / "ftp-server.pem"
            cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
            context = SSL.Context(SSL.TLS_SERVER_METHOD)
            context.use_certificate_chain_file(str(chain))
            context.use_privatekey_file(str(chain))
            context.set_session_id(b"cdr-ingest-tests")
            if tls_max_version is not None:  # e.g. SSL.TLS1_2_VERSION, as many vsftpd builds negotiate
                context.set_max_proto_version(tls_max_version)
            base = TLS_FTPHandler if mode == "ftps" else _ImplicitTLSHandler
            handler = type("Handler", (_CommandNoting, base), {
                "ssl_context": context, "tls_control_required": True, "tls_data_required": True,
                "dtp_handler": _ReuseCheckingDTP,
            })
            self.certificate_pem = cert.cert_chain_pems[0].bytes()
        handler.authorizer = authorizer
        if not mlsd:  # an older server: LIST only (answers 500 to MLSD / MLST)
            handler.proto_cmds = {k: v for k, v in handler.proto_cmds.items() if k not in ("MLSD", "MLST")}
        handler.use_sendfile = False
        handler.passive_ports = None
        handler.banner = "cdr-ingest test server"
        self.ioloop = IOLoop()
        self.server = FTPServer(("127.0.0.1", 0), handler, ioloop=self.ioloop)
        self.server.faults = {}
        self.server.tls_data_reused = 0
        self.server.tls_data_fresh = 0
        self.port = self.server.address[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ftp-test-server", daemon=True)

    @property
    def faults(self) -> dict:
        return self.server.faults

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                self.server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        finally:
            self.server.close_all()

    def start(self) -> "FtpTestServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the FTP test server did not stop"

    def __enter__(self) -> "FtpTestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def path(self, local: Path) -> str:
        return "/" + str(Path(local).relative_to(self.root)).replace("\\", "/").lstrip(".")


def certificate_fingerprint(pem: bytes) -> str:
    import hashlib
    import ssl

    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()
