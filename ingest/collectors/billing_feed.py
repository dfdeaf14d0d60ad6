"""``kind = "billing_feed"``: a carrier's Billing Feed web service, polled with a ``fromid`` cursor.

Each pass asks for the records after the stored cursor (``fromid``; 1 on the very first query), by POST so the
password is never in a URL, and keeps asking from the new cursor until an answer is empty (at most
``max_pages`` answers a pass). An answer without records ends the pass cleanly: once caught up the feed
answers with an empty body (0 bytes or whitespace), a header row alone, or ``[]``. Each answer is checked
before anything is kept: an HTTP error, a timeout or a reset, a body cut short (fewer bytes than its
``Content-Length``, a chunked body without its last chunk), an HTML page, an ``ERROR: ...`` text, a body that
does not parse in the asked format, or JSON that is not an array is an error of the pass (a refused login is
permanent and not retried before the next scheduled run). A good answer is staged through the intake door
as a file named from the source and its ID range, and the cursor advances to the answer's highest ID *in the
same transaction*. A crash between answer and commit asks again from the old cursor; the record keys
(carrier + ID) make sure nothing is loaded twice.

The carriers ask for no more than one query every 10 minutes: a faster schedule is refused at start, and a
failed pass is not retried sooner either (``min_gap_seconds``). ``backfill(date, hour)`` fetches one day or
hour through the same door without moving the cursor.
"""

from __future__ import annotations

import codecs
import http.client
import io
import json
import logging
import socket
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import pyarrow as pa
import pyarrow.compute as pc

from ..catalog import cursors
from ..config import FORMATS
from ..doctor import CheckResult
from ..errors import CdrError, ConfigError, NotText, ParseError, PermanentError, TransientError
from ..formats import Source, parser_for
from ..intake import Origin, receive
from ..schedule import Schedule
from ..secrets import require_secret, resolve_secret
from .base import SCHEDULE_OPTIONS, Collector, PassResult

log = logging.getLogger(__name__)

MIN_INTERVAL = 600.0
EXTENSIONS = {"csv": "csv", "txt": "txt", "pipe": "pipe", "json": "json"}
SPOOL_IN_MEMORY = 8 << 20


class BillingFeed(Collector):
    kind = "billing_feed"
    min_gap_seconds = MIN_INTERVAL
    OPTIONS = {
        "url": (str, True),
        "login": (str, True),
        "password": (str, False),
        "password_file": (str, False),
        "carrier": (str, True),
        "format": (str, False),
        "type": (str, False),
        "callsonly": (bool, False),
        "servicesonly": (bool, False),
        "max_pages": (int, False),
        "timeout_seconds": ((int, float), False),
        "ca_file": (str, False),
        **SCHEDULE_OPTIONS,
    }

    @classmethod
    def check_options(cls, spec, config, key: str) -> None:
        super().check_options(spec, config, key)
        options = spec.options
        require_secret(options, "password", key)
        url = urllib.parse.urlsplit(options["url"])
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ConfigError(f"{key}.url", "must be an https:// URL")
        if url.scheme == "http" and url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"{key}.url", "must be https: the login and password would cross the network in clear")
        if url.username or url.password or url.query:
            raise ConfigError(f"{key}.url", "no credentials or parameters in the URL (they are sent by POST)")
        if options.get("format", "csv") not in FORMATS:
            raise ConfigError(f"{key}.format", f"must be one of {', '.join(FORMATS)}")
        if options.get("callsonly") and options.get("servicesonly"):
            raise ConfigError(f"{key}.servicesonly", "callsonly and servicesonly exclude each other")
        if options.get("max_pages", 20) < 1:
            raise ConfigError(f"{key}.max_pages", "must be at least 1")
        schedule = Schedule.of(options, key)
        if schedule.shortest_gap() < cls.min_gap_seconds:
            raise ConfigError(f"{key}.{'schedule' if schedule.cron else 'interval_seconds'}",
                              "the carriers ask for no more than one query every 10 minutes (600 s)")

    def __init__(self, app, spec):
        super().__init__(app, spec)
        self.url = self.option("url")
        self.format = self.option("format", "csv")
        self.max_pages = int(self.option("max_pages", 20))
        self.timeout = float(self.option("timeout_seconds", 30))
        self.file_type = self.option("type") or ("sdr" if self.option("servicesonly") else "cdr")
        self.carrier = self.option("carrier")

    # -- passes -------------------------------------------------------------------------------------

    def collect(self) -> PassResult:
        result = PassResult(self.name)
        try:
            for _ in range(self.max_pages):
                if self.stopping.is_set():  # stopping: the next page waits for the next pass
                    break
                with self.app.catalog.read() as conn:
                    cursor = cursors.cursor_of(conn, self.name)
                received = self._page(cursor if cursor is not None else 1, advance_from=cursor)
                if received is None:
                    break
                result.received.extend(received)
        except CdrError as exc:
            result.errors.append(str(exc))
            result.failed_permanently = not exc.transient
            log.debug("source %s: %s", self.name, exc)  # told once, at WARNING, with the pass (ingest.daemon)
        return result

    def backfill(self, date: str, hour: int | None = None) -> PassResult:
        """One day (or hour) through the same door, without moving the cursor."""
        result = PassResult(self.name)
        fromid = 1
        try:
            for _ in range(self.max_pages * 10):
                page = self._page(fromid, advance_from=None, date=date, hour=hour, move_cursor=False)
                if page is None:
                    break
                received, fromid = page
                result.received.extend(received)
        except CdrError as exc:
            result.errors.append(str(exc))
            result.failed_permanently = not exc.transient
        return result

    def check(self) -> list[CheckResult]:
        """The feed's host resolves and accepts a connection (over TLS, its certificate verified, for https).
        The feed itself is not queried: a query needs the cursor and counts against the carriers' one query
        per 10 minutes; so the login and the answers are not checked, and the result says so."""
        label = f"source {self.name}"
        url = urllib.parse.urlsplit(self.url)
        host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
        where = f"{host}:{port}"
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return [CheckResult(label, False, f"billing_feed: {host} does not resolve: {exc.strerror}")]
        try:
            with socket.create_connection((host, port), timeout=self.timeout) as sock:
                if url.scheme == "https":
                    context = ssl.create_default_context(cafile=self.option("ca_file"))
                    with context.wrap_socket(sock, server_hostname=host):
                        pass
        except ssl.SSLCertVerificationError as exc:
            return [CheckResult(label, False, f"billing_feed: {where}: TLS certificate not trusted: "
                                              f"{exc.verify_message}")]
        except ssl.SSLError as exc:
            return [CheckResult(label, False, f"billing_feed: {where}: TLS failed: {exc.reason or exc}")]
        except (socket.timeout, TimeoutError):
            return [CheckResult(label, False, f"billing_feed: {where}: no connection within {self.timeout:g} s")]
        except OSError as exc:
            return [CheckResult(label, False, f"billing_feed: {where}: {exc.strerror or type(exc).__name__}")]
        reached = "connects over TLS, certificate verified" if url.scheme == "https" else "connects (plain HTTP, local)"
        return [CheckResult(label, True, f"billing_feed: {where} resolves and {reached}; login and records not "
                                         "checked (a query needs the cursor and the carriers allow one per 10 minutes)")]

    def _page(self, fromid: int, advance_from: int | None, date: str | None = None, hour: int | None = None,
              move_cursor: bool = True):
        params = {"login": self.option("login"), "password": resolve_secret(self.spec.options, "password").reveal(),
                  "fromid": str(fromid), "format": self.format}
        if self.option("callsonly"):
            params["callsonly"] = "1"
        if self.option("servicesonly"):
            params["servicesonly"] = "1"
        if date is not None:
            params["date"] = date
            if hour is not None:
                params["hour"] = str(hour)
        body = self._post(params)
        try:
            count, highest = self._check(body)
            if count == 0:
                return None
            body.seek(0)
            suffix = (f"_{date}" + (f"T{hour:02d}" if hour is not None else "")) if date else ""
            name = f"{self.name}{suffix}_{fromid}-{highest}.{EXTENSIONS[self.format]}"  # records after fromid
            origin = Origin(source=self.name, name=name, location=self.url, carrier=self.option("carrier"),
                            file_type=self.file_type, cadence="adhoc", file_format=self.format)

            def advance(conn, _received) -> None:
                if move_cursor:
                    cursors.advance(conn, self.name, advance_from, highest)

            received = receive(self.app, body, origin, actor=f"collector:{self.name}", in_transaction=advance)
        finally:
            body.close()
        return received if move_cursor else (received, highest)

    # -- HTTP ---------------------------------------------------------------------------------------

    def _post(self, params: dict[str, str]):
        """The whole answer to one query, spooled (with its ``content_type``), or a CdrError: no part of an
        answer that failed or ended before its end is ever returned."""
        data = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(self.url, data=data, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        try:
            spooled.content_type = self._fetch(request, spooled)  # type: ignore[attr-defined]
        except BaseException:
            spooled.close()
            raise
        spooled.seek(0)
        return spooled

    def _fetch(self, request: urllib.request.Request, target) -> str:
        """Write the answer's whole body to ``target`` and return its content type; HTTP and network
        failures raised as CdrErrors."""
        context = ssl.create_default_context(cafile=self.option("ca_file"))
        where = self.url
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:
                _read_whole(response, target)
                return response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            with exc:  # it holds the connection
                if exc.code in (401, 403):
                    raise PermanentError(f"{where}: login refused (HTTP {exc.code})") from None
                raise TransientError(f"{where}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise PermanentError(f"{where}: TLS certificate not trusted: {exc.reason.verify_message}") from None
            raise TransientError(f"{where}: {exc.reason}") from None
        except (socket.timeout, TimeoutError):
            raise TransientError(f"{where}: no answer within {self.timeout:g} s") from None
        except http.client.IncompleteRead:
            raise TransientError(f"{where}: the answer was cut short before its end; nothing of it kept") from None
        except (ConnectionError, OSError) as exc:
            raise TransientError(f"{where}: connection failed: {exc.__class__.__name__}") from None
        except http.client.HTTPException as exc:
            raise TransientError(f"{where}: not a valid HTTP answer: {exc.__class__.__name__}") from None

    def _check(self, body) -> tuple[int, int]:
        """(records, highest ID) of an answer that really is data in the asked format; else an error. A
        blank answer is the caught-up feed's "no new records", (0, 0), whatever content type it claims."""
        if _is_blank(body):
            return 0, 0
        head = body.read(512)
        body.seek(0)
        text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
        if getattr(body, "content_type", "") == "text/html" or text[:1] == "<":
            raise TransientError(f"{self.url}: the answer is an HTML page, not billing data")
        if text[:6].upper() == "ERROR:" or "invalid login" in text.lower():
            first = text.splitlines()[0][:200] if text else ""
            if "login" in first.lower() or "password" in first.lower():
                raise PermanentError(f"{self.url}: login refused: {first}")
            raise TransientError(f"{self.url}: the feed answered with an error: {first}")
        if self.format == "json" and text[:1] != "[":
            raise TransientError(f"{self.url}: the answer is {_json_kind(body)}, not a JSON array")
        source = Source(name=f"{self.name} answer", file_format=self.format, open=lambda: _View(body))
        count = 0
        highest = 0
        try:
            # The feed's cursor is its records' IDs (``fromid``): the format types the ID as a whole number.
            for _layout, batch in parser_for(self.app.config, self.carrier).batches(source):
                count += batch.num_rows
                if batch.num_rows:
                    ids = pc.cast(batch.column("carrier_record_id"), pa.int64())
                    highest = max(highest, pc.max(ids).as_py() or 0)
        except (ParseError, NotText) as exc:
            raise TransientError(f"{self.url}: the answer does not parse as {self.format}: {exc}") from None
        except Exception as exc:  # a fault of the parser's: this answer is not taken, and the pass says why
            log.exception("source %s: the answer could not be checked", self.name)
            raise TransientError(f"{self.url}: the answer could not be checked: {type(exc).__name__}") from None
        return count, highest


def _read_whole(response: http.client.HTTPResponse, target) -> None:
    """Copy the answer's body into ``target``; ``http.client.IncompleteRead`` if it ends before its
    ``Content-Length`` (``read(amt)`` just returns ``b""`` there: the short body would pass for a whole one)."""
    declared = response.length  # the Content-Length; None when chunked (http.client checks its framing)
    received = 0
    while chunk := response.read(1 << 20):
        target.write(chunk)
        received += len(chunk)
    if declared is not None and received < declared:
        raise http.client.IncompleteRead(b"", declared - received)


def _is_blank(body) -> bool:
    """Whether the answer holds nothing but whitespace (a UTF-8 byte-order mark aside)."""
    try:
        chunk = body.read(1 << 16).removeprefix(codecs.BOM_UTF8)
        while chunk:
            if chunk.strip():
                return False
            chunk = body.read(1 << 16)
        return True
    finally:
        body.seek(0)


def _json_kind(body) -> str:
    """What a non-array answer is, for the error message (an answer is one page: small)."""
    try:
        value = json.loads(body.read().decode("utf-8", errors="replace"))
    except ValueError:
        return "not valid JSON"
    finally:
        body.seek(0)
    return f"JSON ({type(value).__name__})"


class _View(io.RawIOBase):
    """A fresh read-only view of the spooled answer (the parser opens its source more than once)."""

    def __init__(self, body):
        self.body = body
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        self.body.seek(self.pos)
        data = self.body.read(len(target))
        target[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:  # the answer itself stays open for staging
        super().close()

