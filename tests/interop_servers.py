"""Real OpenSSH sshd and vsftpd for interop tests, started from Debian's packages on free high ports.

``tests/setup-debian.sh`` (run by the README's test command) installs them. Where they are missing the
interop tests skip with a loud reason, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
VSFTPD = "/usr/sbin/vsftpd"


def require(binary: str, package: str) -> None:
    if not Path(binary).exists() or os.geteuid() != 0:
        why = f"{binary} ({package}) is not installed" if not Path(binary).exists() else "needs root"
        message = f"interop test cannot run: {why}; run tests/setup-debian.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s")


@contextmanager
def running(argv: list[str], port: int, log: Path):
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class OpenSSH:
    port: int
    host_public_key: str  # the "ssh-ed25519 AAAA..." line, for a known_hosts file
    client_key: Path
    user: str


@contextmanager
def openssh_server(work: Path):
    """sshd on 127.0.0.1:<free port>, key authentication for the current (root) user, internal-sftp."""
    require(SSHD, "openssh-server")
    work.mkdir(parents=True, exist_ok=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    shutil.copy(work / "client.pub", work / "authorized_keys")
    port = free_port()
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\nPidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    with running([SSHD, "-D", "-e", "-f", str(work / "sshd_config")], port, work / "sshd.log"):
        host_key = " ".join((work / "host.pub").read_text().split()[:2])
        yield OpenSSH(port=port, host_public_key=host_key, client_key=work / "client", user="root")


@dataclass
class Vsftpd:
    port: int
    root: Path
    ca_file: Path


@contextmanager
def vsftpd_server(work: Path, root: Path, ca_file: Path, cert_file: Path, key_file: Path):
    """vsftpd serving ``root`` to anonymous, TLS required on control and data, and the data connection
    required to reuse the control connection's TLS session (``require_ssl_reuse=YES``, vsftpd's default)."""
    require(VSFTPD, "vsftpd")
    work.mkdir(parents=True, exist_ok=True)
    (work / "empty").mkdir(exist_ok=True)
    port = free_port()
    passive = free_port()
    (work / "vsftpd.conf").write_text(
        f"listen=YES\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\nanonymous_enable=YES\n"
        f"anon_root={root}\nno_anon_password=YES\nlocal_enable=NO\nwrite_enable=NO\nssl_enable=YES\n"
        "allow_anon_ssl=YES\nforce_anon_logins_ssl=YES\nforce_anon_data_ssl=YES\nrequire_ssl_reuse=YES\n"
        f"rsa_cert_file={cert_file}\nrsa_private_key_file={key_file}\npasv_enable=YES\n"
        f"pasv_min_port={passive}\npasv_max_port={passive}\npasv_address=127.0.0.1\n"
        f"secure_chroot_dir={work / 'empty'}\nseccomp_sandbox=NO\nxferlog_enable=NO\n"
    )
    os.chmod(root, 0o555)  # vsftpd refuses an anonymous root the ftp user could write
    with running([VSFTPD, str(work / "vsftpd.conf")], port, work / "vsftpd.log"):
        yield Vsftpd(port=port, root=root, ca_file=ca_file)
