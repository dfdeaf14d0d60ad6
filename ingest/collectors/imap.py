"""``kind = "imap"``: a mailbox polled over IMAP (imap-tools), each message's attachments taken once.

Each pass selects ``folder`` (default INBOX) and takes the messages not yet marked, oldest first:

1. The folder's UIDVALIDITY is compared with the one kept in the catalog. A change means the server
   renumbered every message (a restore, a rebuilt index, a migration): no stored UID counts any more, and
   messages are recognised by their content key instead (the xxh3-128 of the message's exact bytes).
2. A message whose (UIDVALIDITY, UID) is recorded as taken was cut off by a crash before it was marked: it
   is only marked now.
3. Any other message is fetched (``BODY.PEEK[]``: never marking it read), its attachments go through the
   intake door (``ingest.mail``; the same plus-address routing from its recipient headers), it is recorded
   as taken in the catalog, and only then marked on the server: ``after = "flag"`` (default) stores
   ``flag`` (a keyword of its own, default ``$CdrCollected``: never a system flag such as ``\\Seen``, which
   people reading the mailbox set too), ``after = "move"`` moves it to ``processed_folder`` (created if
   missing).

A crash at any point loses nothing and marks nothing done early: before the catalog record the message is
still unmarked and is taken again, its parts offered as the same deliveries (``imap:<content key>#<n>``),
so parts already staged are returned as they are instead of being held as duplicates of themselves;
after the record, only the mark is repeated. A message with the exact bytes of one already taken (a
renumbered folder, a copy put back) is marked without taking its files again.

Connections are TLS (``security = "imaps"``, default port 993, or ``"starttls"`` on 143) verified against
the system store or ``ca_file``; ``"plain"`` is refused except to this machine. The password comes from
``${ENV}`` or ``password_file``. Server errors are mapped once, here, to transient (unreachable, dropped,
timed out) or permanent (login, certificate, missing folder) errors; a message over ``max_message_bytes``
(default 50 MiB), or one that cannot be taken, fails that message only: it is reported in the pass result's
``entry_errors`` and left in the mailbox, and the pass still succeeds.
"""

from __future__ import annotations

import imaplib
import logging
import re
import socket
import ssl
from contextlib import contextmanager
from email import policy
from email.parser import BytesHeaderParser
from typing import Iterator

import xxhash

from .. import faults
from ..catalog import mailboxes
from ..doctor import CheckResult
from ..errors import CdrError, ConfigError, PermanentError, TransientError
from ..intake import Received
from ..mail import Route, take_message
from ..secrets import require_secret, resolve_secret
from .base import SCHEDULE_OPTIONS, Collector, PassResult

log = logging.getLogger(__name__)

SECURITY = {"imaps": 993, "starttls": 143, "plain": 143}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
KEYWORD = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]+")  # an IMAP atom: no specials, no backslash
UID_CHUNK = 200


class ImapMailbox(Collector):
    kind = "imap"
    OPTIONS = {
        "host": (str, True),
        "port": (int, False),
        "security": (str, False),
        "username": (str, True),
        "password": (str, False),
        "password_file": (str, False),
        "ca_file": (str, False),
        "folder": (str, False),
        "after": (str, False),
        "flag": (str, False),
        "processed_folder": (str, False),
        "mailbox": (str, False),
        "carrier": (str, False),
        "max_message_bytes": (int, False),
        "max_messages": (int, False),
        "timeout_seconds": ((int, float), False),
        **SCHEDULE_OPTIONS,
    }

    @classmethod
    def check_options(cls, spec, config, key: str) -> None:
        super().check_options(spec, config, key)
        options = spec.options
        require_secret(options, "password", key)
        security = options.get("security", "imaps")
        if security not in SECURITY:
            raise ConfigError(f"{key}.security", f"must be one of {', '.join(SECURITY)}")
        if security == "plain" and options["host"] not in LOOPBACK:
            raise ConfigError(f"{key}.security", "plain IMAP would send the password in clear; use imaps or starttls")
        if security == "starttls" and options.get("port") == 993:
            raise ConfigError(f"{key}.port", "993 is the implicit-TLS port: use security = \"imaps\"")
        after = options.get("after", "flag")
        if after not in ("flag", "move"):
            raise ConfigError(f"{key}.after", 'must be "flag" or "move"')
        if after == "move":
            processed = options.get("processed_folder")
            if not processed:
                raise ConfigError(f"{key}.processed_folder", 'is required with after = "move"')
            if processed == options.get("folder", "INBOX"):
                raise ConfigError(f"{key}.processed_folder", "must differ from the folder polled")
        flag = options.get("flag", "$CdrCollected")
        if flag.startswith("\\"):
            # People set \Seen, \Flagged, \Answered too: a message read before the poll would never be taken.
            raise ConfigError(f"{key}.flag", f"must be a keyword of cdr-ingest's own such as $CdrCollected, not the "
                                             f"system flag {flag} (people reading the mailbox set it too)")
        if not KEYWORD.fullmatch(flag):
            raise ConfigError(f"{key}.flag", "must be a keyword such as $CdrCollected (an IMAP atom)")
        for option in ("max_message_bytes", "max_messages"):
            if options.get(option, 1) < 1:
                raise ConfigError(f"{key}.{option}", "must be at least 1")
        for option in ("folder", "processed_folder"):
            if any(c in options.get(option, "") for c in "\r\n\0"):
                raise ConfigError(f"{key}.{option}", "must be a folder name on one line")

    def __init__(self, app, spec):
        super().__init__(app, spec)
        self.folder = self.option("folder", "INBOX")
        self.after = self.option("after", "flag")
        self.flag = self.option("flag", "$CdrCollected")
        self.processed = self.option("processed_folder")
        self.mailbox = self.option("mailbox", "cdrs")
        self.max_bytes = int(self.option("max_message_bytes", 50 * 1024 * 1024))
        self.max_messages = self.option("max_messages")  # per pass; None: every message waiting
        self.security = self.option("security", "imaps")
        self.host = self.option("host")
        self.port = int(self.option("port", SECURITY[self.security]))
        self.where = f"imap {self.host}:{self.port}"

    # -- one pass -----------------------------------------------------------------------------------

    def collect(self) -> PassResult:
        result = PassResult(self.name)
        try:
            with self._session() as session:
                self._pass(session, result)
        except CdrError as exc:
            result.errors.append(str(exc))
            result.failed_permanently = not exc.transient
            log.debug("source %s: %s", self.name, exc)  # told once, at WARNING, with the pass (ingest.daemon)
        return result

    def _pass(self, session: "_Session", result: PassResult) -> None:
        uidvalidity = session.select(self.folder)
        self._note_uidvalidity(uidvalidity)
        if self.after == "move":
            session.ensure_folder(self.processed)
        else:
            session.check_flag_kept(self.flag, self.folder)
        candidates = session.search(self._unmarked())
        with self.app.catalog.read() as conn:
            taken = mailboxes.taken_among(conn, self.name, self.folder, uidvalidity, candidates)
        for uid in sorted(taken):  # recorded, but a crash came before the mark
            self._mark(session, uid)
        todo = [uid for uid in candidates if uid not in taken]
        sizes = session.sizes(todo)
        count = 0
        for uid in todo:
            if self.stopping.is_set():  # stopping: the rest are taken on the next pass
                break
            if self.max_messages is not None and count >= self.max_messages:
                break  # a message that cannot be taken is skipped, never counted: it blocks nothing newer
            if uid not in sizes:
                continue  # expunged by someone else since the search
            if sizes[uid] > self.max_bytes:
                result.entry_errors.append(f"{self.where} {self.folder} UID {uid}: the message is {sizes[uid]} bytes, "
                                           f"over max_message_bytes ({self.max_bytes}); left in the mailbox")
                continue
            count += self._take(session, uidvalidity, uid, result)

    def check(self) -> list[CheckResult]:
        """Log in, select the folder, check that taken messages can be marked, count those waiting: nothing
        is fetched, marked, moved or recorded."""
        label = f"source {self.name}"
        try:
            with self._session() as session:
                session.select(self.folder)
                if self.after == "move":
                    marking = f"taken messages move to {self.processed!r}" + (
                        "" if session.has_folder(self.processed) else " (created on the first pass)")
                else:
                    session.check_flag_kept(self.flag, self.folder)
                    marking = f"taken messages are flagged {self.flag}"
                waiting = len(session.search(self._unmarked()))
        except CdrError as exc:
            return [CheckResult(label, False, f"imap: {exc}")]
        return [CheckResult(label, True, f"imap: logged in to {self.where} as {self.option('username')!r}, folder "
                                         f"{self.folder!r} selected, {waiting} message{'' if waiting == 1 else 's'} "
                                         f"waiting (nothing fetched); {marking}")]

    def _note_uidvalidity(self, uidvalidity: int) -> None:
        with self.app.catalog.write() as conn:
            self.app.catalog.serialize(conn, f"imap:{self.name}")
            before = mailboxes.uidvalidity_of(conn, self.name, self.folder)
            if before != uidvalidity:
                mailboxes.set_uidvalidity(conn, self.name, self.folder, uidvalidity)
        if before is not None and before != uidvalidity:
            log.warning("source %s: UIDVALIDITY of %s changed from %s to %s: the server renumbered its messages; "
                        "messages already taken are recognised by their content", self.name, self.folder, before,
                        uidvalidity)

    def _unmarked(self) -> str:
        return "UNDELETED" if self.after == "move" else f"UNDELETED UNKEYWORD {self.flag}"

    def _take(self, session: "_Session", uidvalidity: int, uid: int, result: PassResult) -> bool:
        """Take one message; False if it could not be (the error is in ``result``; it stays unmarked)."""
        raw = session.fetch(uid)
        if raw is None:
            log.info("source %s: %s UID %s is gone (expunged meanwhile)", self.name, self.folder, uid)
            return False
        key = xxhash.xxh3_128_hexdigest(raw)
        headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
        with self.app.catalog.read() as conn:
            earlier = mailboxes.taken_by_key(conn, self.name, key)
        received: list[Received] = []
        if earlier is not None:
            log.info("source %s: %s UID %s has the exact bytes of a message already taken (UIDVALIDITY %s UID %s); "
                     "marking it only", self.name, self.folder, uid, earlier["uidvalidity"], earlier["uid"])
        else:
            try:
                received = take_message(self.app, raw, source=self.name, default_route=Route(self.option("carrier")),
                                        mailbox=self.mailbox, actor=f"collector:{self.name}", delivery=f"imap:{key}")
            except Exception as exc:  # this message only: it stays unmarked, is reported, and is tried next pass
                if not isinstance(exc, CdrError):
                    log.exception("source %s: %s UID %s could not be taken", self.name, self.folder, uid)
                message = (f"{self.where} {self.folder} UID {uid} ({headers.get('Subject', '')!r}): "
                           f"{exc if isinstance(exc, CdrError) else type(exc).__name__ + ': ' + str(exc)}")
                # A busy catalog fails the pass (retried soon); a message we cannot take fails that message only.
                (result.errors if isinstance(exc, CdrError) and exc.transient else result.entry_errors).append(message)
                return False
        del raw
        faults.point("imap.staged")
        with self.app.catalog.write() as conn:
            self.app.catalog.serialize(conn, f"imap:{self.name}")
            if uid not in mailboxes.taken_among(conn, self.name, self.folder, uidvalidity, [uid]):
                mailboxes.record_taken(conn, self.name, self.folder, uidvalidity, uid, message_key=key,
                                       message_id=headers.get("Message-ID"), files=len(received))
        faults.point("imap.recorded")
        self._mark(session, uid)
        result.received.extend(received)
        return True

    def _mark(self, session: "_Session", uid: int) -> None:
        if self.after == "move":
            session.move(uid, self.processed)
        else:
            session.store_flag(uid, self.flag)

    @contextmanager
    def _session(self) -> Iterator["_Session"]:
        session = _Session.open(self)
        try:
            yield session
        finally:
            session.close()


class _Session:
    """One logged-in IMAP connection; every imaplib/imap-tools error is mapped here, once."""

    def __init__(self, mailbox, where: str):
        self.box = mailbox
        self.client: imaplib.IMAP4 = mailbox.client
        self.where = where
        self.capabilities: set[str] = set()
        self.permanent_flags: set[str] = set()

    @classmethod
    def open(cls, collector: ImapMailbox) -> "_Session":
        from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted

        options = collector.spec.options
        host, port, where = collector.host, collector.port, collector.where
        timeout = float(options.get("timeout_seconds", 60))
        context = ssl.create_default_context(cafile=options.get("ca_file"))
        with _mapped(where, "connect"):
            if collector.security == "imaps":
                box = MailBox(host, port, timeout=timeout, ssl_context=context)
            elif collector.security == "starttls":
                box = MailBoxStartTls(host, port, timeout=timeout, ssl_context=context)
            else:
                box = MailBoxUnencrypted(host, port, timeout=timeout)
        session = cls(box, where)
        try:
            password = resolve_secret(options, "password").reveal()
            with _mapped(where, "login", user=options["username"]):
                if (options["username"] + password).isascii():
                    box.login(options["username"], password, initial_folder=None)
                else:  # LOGIN is ASCII only; AUTHENTICATE PLAIN carries UTF-8
                    box.login_utf8(options["username"], password, initial_folder=None)
                typ, data = session.client.capability()  # after login: servers announce more (MOVE, UIDPLUS)
                session.capabilities = set(data[0].decode().upper().split()) if typ == "OK" and data[0] else set()
        except BaseException:
            session.close()
            raise
        return session

    def select(self, folder: str) -> int:
        """Select ``folder`` read-write; its UIDVALIDITY."""
        with _mapped(self.where, f"select {folder}"):
            typ, data = self.client.select(_encoded(folder))
            if typ != "OK":
                raise PermanentError(f"{self.where}: cannot open folder {folder!r}: {_text(data)}")
            responses = self.client.untagged_responses
            uidvalidity = int(responses["UIDVALIDITY"][-1])
            flags = responses.get("PERMANENTFLAGS", [b"()"])[-1].decode()
        self.permanent_flags = set(flags.strip("()").split())
        return uidvalidity

    def check_flag_kept(self, flag: str, folder: str) -> None:
        if flag not in self.permanent_flags and "\\*" not in self.permanent_flags:
            raise PermanentError(f"{self.where}: the server does not keep the keyword {flag} in {folder!r}; "
                                 'set after = "move"')

    def has_folder(self, folder: str) -> bool:
        with _mapped(self.where, f"look for {folder}"):
            return self.box.folder.exists(folder)

    def ensure_folder(self, folder: str) -> None:
        if self.has_folder(folder):
            return
        with _mapped(self.where, f"create {folder}"):
            self.box.folder.create(folder)
        log.info("%s: created folder %r for processed messages", self.where, folder)

    def search(self, criteria: str) -> list[int]:
        with _mapped(self.where, "search"):
            return sorted(int(uid) for uid in self.box.uids(criteria, charset=None))

    def sizes(self, uids: list[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        with _mapped(self.where, "fetch sizes"):
            for start in range(0, len(uids), UID_CHUNK):
                typ, data = self.client.uid("FETCH", ",".join(map(str, uids[start:start + UID_CHUNK])),
                                            "(UID RFC822.SIZE)")
                _check(typ, data, self.where, "fetch sizes")
                for item in data:
                    line = item[0] if isinstance(item, tuple) else item
                    match = re.search(rb"UID (\d+).*RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+).*UID (\d+)", line or b"")
                    if match:
                        uid, size = (match.group(1), match.group(2)) if match.group(1) else (match.group(4),
                                                                                                match.group(3))
                        found[int(uid)] = int(size)
        return found

    def fetch(self, uid: int) -> bytes | None:
        """The message's exact bytes, without setting \\Seen; None if it is gone."""
        with _mapped(self.where, f"fetch UID {uid}"):
            typ, data = self.client.uid("FETCH", str(uid), "(BODY.PEEK[])")
            _check(typ, data, self.where, f"fetch UID {uid}")
        # The body is the literal of the FETCH item naming BODY[]; its UID may come before or after it (RFC 3501
        # leaves the order to the server), and unsolicited FETCH responses (flag changes) carry no literal.
        for item in data:
            if isinstance(item, tuple) and b"BODY[]" in item[0].upper():
                return item[1]
        return None

    def store_flag(self, uid: int, flag: str) -> None:
        with _mapped(self.where, f"flag UID {uid}"):
            typ, data = self.client.uid("STORE", str(uid), "+FLAGS.SILENT", f"({flag})")
            _check(typ, data, self.where, f"flag UID {uid}")

    def move(self, uid: int, folder: str) -> None:
        target = _encoded(folder)
        with _mapped(self.where, f"move UID {uid}"):
            if "MOVE" not in self.capabilities:
                # COPY + \Deleted + EXPUNGE would also expunge messages others marked \Deleted.
                raise PermanentError(f"{self.where}: the server does not support MOVE (RFC 6851), so a message "
                                     'cannot be moved safely; use after = "flag"')
            typ, data = self.client.uid("MOVE", str(uid), target)
            _check(typ, data, self.where, f"move UID {uid}")

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # closing a broken connection: nothing to report beyond the error that broke it
            try:
                self.client.shutdown()
            except Exception:
                pass


@contextmanager
def _mapped(where: str, doing: str, user: str | None = None) -> Iterator[None]:
    """imaplib, imap-tools, ssl and socket errors -> TransientError / PermanentError (never the password)."""
    from imap_tools.errors import (MailboxFolderCreateError, MailboxLoginError, MailboxStarttlsError,
                                   UnexpectedCommandStatusError)

    try:
        yield
    except CdrError:
        raise
    except MailboxLoginError:
        raise PermanentError(f"{where}: login refused for {user!r}") from None
    except UnicodeError:  # never echo the text: it may be the password
        raise PermanentError(f"{where}: {doing} failed: a value could not be encoded for IMAP") from None
    except MailboxStarttlsError:
        raise PermanentError(f"{where}: the server refused STARTTLS") from None
    except MailboxFolderCreateError as exc:
        raise PermanentError(f"{where}: cannot create folder: {_text(exc.command_result[1])}") from None
    except ssl.SSLCertVerificationError as exc:
        raise PermanentError(f"{where}: TLS certificate not trusted: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise TransientError(f"{where}: TLS failed during {doing}: {exc.reason or exc}") from None
    except imaplib.IMAP4.readonly:
        raise PermanentError(f"{where}: the folder is read-only here; messages could not be marked as taken") from None
    except imaplib.IMAP4.abort as exc:
        raise TransientError(f"{where}: connection lost during {doing}: {_clean(exc)}") from None
    except (socket.timeout, TimeoutError):
        raise TransientError(f"{where}: no answer during {doing}") from None
    except ConnectionError as exc:
        raise TransientError(f"{where}: connection failed during {doing}: {exc.__class__.__name__}") from None
    except OSError as exc:
        raise TransientError(f"{where}: {doing} failed: {exc.strerror or exc.__class__.__name__}") from None
    except imaplib.IMAP4.error as exc:
        if doing == "login":
            raise PermanentError(f"{where}: login refused for {user!r}: {_clean(exc)}") from None
        if doing == "connect":  # e.g. STARTTLS not offered: never fall back to a plain connection
            raise PermanentError(f"{where}: cannot connect securely: {_clean(exc)}") from None
        raise TransientError(f"{where}: the server refused {doing}: {_clean(exc)}") from None
    except UnexpectedCommandStatusError as exc:
        raise TransientError(f"{where}: the server refused {doing}: {_text(exc.command_result[1])}") from None


def _check(typ: str, data, where: str, doing: str) -> None:
    if typ != "OK":
        raise TransientError(f"{where}: the server refused {doing}: {_text(data)}")


def _text(data) -> str:
    parts = data if isinstance(data, (list, tuple)) else [data]
    words = [p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in parts if p is not None]
    return " ".join(words)[:200]


def _clean(exc: Exception) -> str:
    return str(exc)[:200]


def _encoded(folder: str) -> bytes:
    """A folder name as IMAP wants it: modified UTF-7, quoted."""
    from imap_tools.utils import encode_folder

    return encode_folder(folder)
