"""A real Dovecot IMAP server for tests, from Debian's ``dovecot-imapd``, started unprivileged on free high ports.

``tests/setup-debian.sh`` (run by the README's test command) installs it. Run as root, the server is started
as ``nobody``; otherwise as the current user. Dovecot's non-root mode runs every process as that user, so
its services are not chrooted. One server serves the whole test session; each test takes its own user (a
fresh Maildir), so no test sees another's messages. Without Dovecot the tests skip loudly, except under
CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop_servers import free_port, wait_for_port

DOVECOT = "/usr/sbin/dovecot"
PASSWORD = "Imap-test-secret-81"
UTF8_PASSWORD = "Pässwörd-ñ-81"  # not ASCII: IMAP LOGIN cannot carry it
ACCOUNTS = 300


@dataclass
class ImapUser:
    name: str
    password: str


class Dovecot:
    def __init__(self, work: Path, ca):
        self.work = work
        self.ca_file = work / "ca.pem"
        self.imaps_port = free_port()
        self.imap_port = free_port()
        self.run_as = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        account = pwd.getpwnam(self.run_as)
        self.uid, self.gid = account.pw_uid, account.pw_gid
        ca.cert_pem.write_to_path(str(self.ca_file))
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(work / "server.pem"))
        # Accounts are made up front: Dovecot re-reads passwd-file only when its mtime moves (whole seconds).
        self.spare = {password: [ImapUser(f"u{uuid.uuid4().hex[:12]}", password) for _ in range(ACCOUNTS)]
                      for password in (PASSWORD, UTF8_PASSWORD)}
        (work / "passwd").write_text("".join(f"{u.name}:{{PLAIN}}{u.password}\n"
                                             for users in self.spare.values() for u in users), encoding="utf-8")
        for sub in ("run", "state", "home"):
            (work / sub).mkdir()
        (work / "dovecot.conf").write_text(self._config())
        self.proc: subprocess.Popen | None = None

    def _config(self) -> str:
        w = self.work
        unchrooted = "".join(f"service {name} {{\n  chroot =\n}}\n" for name in ("anvil", "auth", "stats"))
        return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {w}/run
state_dir = {w}/state
log_path = {w}/dovecot.log
ssl = yes
ssl_cert = <{w}/server.pem
ssl_key = <{w}/server.pem
default_internal_user = {self.run_as}
default_internal_group = {pwd_group(self.gid)}
default_login_user = {self.run_as}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {w}/passwd
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={w}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
{unchrooted}"""

    def start(self) -> "Dovecot":
        if os.geteuid() == 0:
            for path in [self.work, *self.work.rglob("*")]:
                os.chown(path, self.uid, self.gid)
        log = self.work / "dovecot.log"
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.work / "dovecot.conf")], cwd=self.work,
                                     user=self.uid if os.geteuid() == 0 else None,
                                     group=self.gid if os.geteuid() == 0 else None,
                                     extra_groups=[] if os.geteuid() == 0 else None,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.imaps_port, self.proc, log)
        wait_for_port(self.imap_port, self.proc, log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def add_user(self, password: str = PASSWORD) -> ImapUser:
        """An account no test has used (an empty mailbox), with ``PASSWORD`` or ``UTF8_PASSWORD``."""
        return self.spare[password].pop()

    @contextmanager
    def client(self, user: ImapUser):
        """imap-tools, over verified TLS, to look at or change the mailbox from the test's side."""
        from imap_tools import MailBox

        context = ssl.create_default_context(cafile=str(self.ca_file))
        box = MailBox("127.0.0.1", self.imaps_port, timeout=10, ssl_context=context)
        login = box.login if user.password.isascii() else box.login_utf8
        with login(user.name, user.password, initial_folder=None):
            yield box

    def deliver(self, user: ImapUser, message: bytes, folder: str = "INBOX") -> int:
        """Put a message in ``folder`` (created if missing); its UID."""
        with self.client(user) as box:
            if not box.folder.exists(folder):
                box.folder.create(folder)
            typ, data = box.append(message, folder)
        code = data[0].decode()
        return int(code.split("APPENDUID", 1)[1].split()[1].rstrip("]"))

    def uids(self, user: ImapUser, folder: str = "INBOX", criteria: str = "ALL") -> list[int]:
        with self.client(user) as box:
            if not box.folder.exists(folder):
                return []
            box.folder.set(folder)
            return [int(u) for u in box.uids(criteria, charset=None)]

    def flags(self, user: ImapUser, folder: str = "INBOX") -> dict[int, set[str]]:
        with self.client(user) as box:
            box.folder.set(folder)
            return {int(m.uid): set(m.flags) for m in box.fetch("ALL", mark_seen=False, headers_only=True)}

    def sessions(self, user: ImapUser) -> list[dict[str, int]]:
        """The counters Dovecot logs as each of ``user``'s sessions ends (body_count: messages whose body
        was fetched), in order."""
        found = []
        for line in (self.work / "dovecot.log").read_text().splitlines():
            if f"imap({user.name})" in line and "Disconnected" in line:
                found.append({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.split("Disconnected", 1)[1])})
        return found

    def wait_for_sessions(self, user: ImapUser, count: int, timeout: float = 10.0) -> list[dict[str, int]]:
        deadline = time.monotonic() + timeout
        while len(found := self.sessions(user)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"Dovecot logged {len(found)} sessions of {user.name}, expected {count}")
            time.sleep(0.05)
        return found

    def uidvalidity(self, user: ImapUser, folder: str = "INBOX") -> int:
        with self.client(user) as box:
            return box.folder.status(folder, ["UIDVALIDITY"])["UIDVALIDITY"]


def pwd_group(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


def require_dovecot() -> None:
    if not Path(DOVECOT).exists():
        message = f"IMAP test cannot run: {DOVECOT} (dovecot-imapd) is not installed; run tests/setup-debian.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def dovecot_server():
    import trustme

    require_dovecot()
    work = Path(tempfile.mkdtemp(prefix="cdr-dovecot-"))  # not under pytest's 0700 root-owned tmp: nobody reads it
    server = Dovecot(work, trustme.CA())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
