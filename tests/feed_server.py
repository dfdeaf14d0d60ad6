"""A stand-in for the carriers' "Billing Feed" web service (``/billingfeed.php``), for tests.

Stdlib only: ``http.server.ThreadingHTTPServer`` on 127.0.0.1, an ephemeral port, served from a daemon
thread. Parameters come from the query string and/or a urlencoded POST body; POST wins on a clash.

    with FeedServer(carrier="techconnections", page_size=2) as feed:
        feed.add(record(1), record(2, CallType="Line Rental"))
        urllib.request.urlopen(feed.url + "?login=81234567&password=Monkey123&fromid=0")

``empty_body`` is what a csv/txt/pipe answer with no records is: ``None`` (the default) the header row
alone, else exactly these bytes (``b""``, ``b"\r\n"``: how billingfeed.php answers once caught up). A json
answer with no records is always ``[]``.

``fault`` makes every following answer misbehave until it is set back to ``None``:
``"html"``, ``"error500"``, ``"garbage"``, ``"json-object"``, ``"binary"`` (a PDF's bytes), ``"surrogate"``
(a JSON answer whose text holds a lone surrogate escape, ``"\\ud800"``), ``"slow"`` (sleeps ``slow_seconds``, cut
short by ``stop()``), ``"reset"`` (socket closed, no answer), ``"error-text"``; and the answers cut short,
each sending all but the last ``cut_bytes`` bytes of the real answer (by default the end of the last row's
last field): ``"cut-short"`` (a ``Content-Length`` of the whole answer, then the connection closed),
``"chunked-cut"`` (chunked, then closed without the terminating chunk), ``"reset-mid-body"`` (a
``Content-Length`` of the whole answer, then the connection reset).
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.records import LAYOUTS

PATH = "/billingfeed.php"
SERVICE_CALL_TYPES = frozenset({"Line Rental", "Broadband", "Number Charge", "Service"})
DELIMITERS = {"csv": ",", "txt": "\t", "pipe": "|"}
CONTENT_TYPES = {"csv": "text/csv", "txt": "text/plain", "pipe": "text/plain", "json": "application/json"}
FAULTS = (None, "html", "error500", "garbage", "json-object", "binary", "surrogate", "slow", "reset", "error-text",
          "cut-short", "chunked-cut", "reset-mid-body")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class FeedServer:
    def __init__(self, carrier: str = "hero", login: str = "81234567", password: str = "Monkey123",
                 page_size: int = 1000):
        if carrier not in LAYOUTS:
            raise ValueError(f"unknown carrier {carrier!r}; one of {sorted(LAYOUTS)}")
        self.carrier = carrier
        self.columns: tuple[str, ...] = tuple(LAYOUTS[carrier])
        self.login = login
        self.password = password
        self.page_size = page_size
        self.url: str = ""
        self.records: list[dict] = []
        self.requests: list[dict] = []
        self.fault: str | None = None
        self.slow_seconds: float = 5.0
        self.cut_bytes: int = 5
        self.empty_body: bytes | None = None
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- data -------------------------------------------------------------------------------------------
    def add(self, *records: dict) -> None:
        with self.lock:
            self.records.extend(records)

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> "FeedServer":
        if self._httpd is not None:
            return self
        feed = self

        class Handler(_Handler):
            server_feed = feed

        self._stopping.clear()
        httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd = httpd
        host, port = httpd.server_address[:2]
        self.url = f"http://{host}:{port}{PATH}"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="feed-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes any "slow" answer still sleeping
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        httpd.server_close()  # closes the listening socket and joins the request threads

    def __enter__(self) -> "FeedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the service ------------------------------------------------------------------------------------
    def _select(self, params: dict[str, str]) -> list[dict] | str:
        """The rows answering ``params``, or an error text (``ERROR: ...``)."""
        if params.get("login") != self.login or params.get("password") != self.password:
            return "ERROR: Invalid login"
        fromid = params.get("fromid", "").strip()
        if not fromid:
            return "ERROR: fromid is required"
        try:
            after = int(fromid)
        except ValueError:
            return "ERROR: fromid must be a number"
        date = params.get("date", "").strip()
        hour = params.get("hour", "").strip()
        if date and not _DATE.match(date):
            return "ERROR: date must be YYYY-MM-DD"
        hour_n = None
        if hour:
            if not date:
                return "ERROR: hour requires date"
            if not hour.isdigit() or not 0 <= int(hour) <= 23:
                return "ERROR: hour must be 0-23"
            hour_n = int(hour)
        calls_only = services_only = False
        if self.carrier == "techconnections":
            calls_only = params.get("callsonly", "") == "1"
            services_only = params.get("servicesonly", "") == "1"
        with self.lock:
            rows = list(self.records)
        out = []
        for row in rows:
            if int(row["ID"]) <= after:
                continue
            utc = str(row.get("UTCDateTime", ""))
            if date and utc[:10] != date:
                continue
            if hour_n is not None and (len(utc) < 13 or not utc[11:13].isdigit() or int(utc[11:13]) != hour_n):
                continue
            service = row.get("CallType", "") in SERVICE_CALL_TYPES
            if calls_only and service:
                continue
            if services_only and not service:
                continue
            out.append(row)
        out.sort(key=lambda r: int(r["ID"]))
        return out[: self.page_size]

    def render(self, rows: list[dict], fmt: str) -> bytes:
        if fmt == "json":
            return json.dumps([{c: str(row.get(c, "")) for c in self.columns} for row in rows]).encode()
        if not rows and self.empty_body is not None:
            return self.empty_body
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=DELIMITERS[fmt], lineterminator="\r\n")
        writer.writerow(self.columns)
        for row in rows:
            writer.writerow([str(row.get(c, "")) for c in self.columns])
        return buf.getvalue().encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins the request threads
    block_on_close = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up (timeouts, resets) is not a test failure of the server


class _Handler(BaseHTTPRequestHandler):
    server_feed: FeedServer
    timeout = 10
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._serve(form={})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form = {}
        if ctype in ("", "application/x-www-form-urlencoded"):
            form = _first(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
        self._serve(form=form)

    def _serve(self, form: dict[str, str]) -> None:
        feed = self.server_feed
        split = urlsplit(self.path)
        query = _first(parse_qs(split.query, keep_blank_values=True))
        params = {**query, **form}  # POST wins
        with feed.lock:
            feed.requests.append({"method": self.command, "query": query, "form": form, "params": params})
            fault = feed.fault
        if split.path != PATH:
            return self._send(404, b"Not Found", "text/plain")
        fmt = params.get("format", "").strip().lower() or "csv"
        if fault == "slow":
            if feed._stopping.wait(feed.slow_seconds):
                return self._reset()
            fault = None
        if fault == "reset":
            return self._reset()
        if fault == "html":
            return self._send(200, b"<html><body>Maintenance</body></html>", "text/html")
        if fault == "error500":
            return self._send(500, b"Internal Server Error", "text/plain")
        if fault == "error-text":
            return self._send(200, b"ERROR: database unavailable", "text/plain")
        if fault == "json-object":
            return self._send(200, b'{"error": "x"}', "application/json")
        if fmt not in CONTENT_TYPES:
            return self._send(200, b"ERROR: Invalid format", "text/plain")
        if fault == "binary":
            return self._send(200, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 8, "application/octet-stream")
        if fault == "surrogate" and fmt == "json":
            [row] = json.loads(feed.render(feed._select(params)[:1], "json"))
            row["TextDesc1"] = "PLACEHOLDER"
            body = json.dumps([row]).replace("PLACEHOLDER", "\\ud800").encode()
            return self._send(200, body, "application/json")
        if fault == "garbage":
            if fmt == "json":
                return self._send(200, b"{not json", "application/json")
            sep = DELIMITERS[fmt]
            body = (sep.join(feed.columns) + "\r\n" + sep.join(["1", "2", "3"]) + "\r\n").encode()
            return self._send(200, body, CONTENT_TYPES[fmt])
        rows = feed._select(params)
        if isinstance(rows, str):
            return self._send(200, rows.encode(), "text/plain")
        body = feed.render(rows, fmt)
        if fault in ("cut-short", "chunked-cut", "reset-mid-body"):
            return self._send_cut(fault, body, CONTENT_TYPES[fmt], feed.cut_bytes)
        return self._send(200, body, CONTENT_TYPES[fmt])

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_cut(self, fault: str, body: bytes, ctype: str, cut_bytes: int) -> None:
        """Announce the whole ``body``, send all but its last ``cut_bytes`` bytes, and end the connection."""
        sent = body[: max(len(body) - cut_bytes, 0)]
        self.close_connection = True
        if fault == "chunked-cut":
            self.protocol_version = "HTTP/1.1"  # chunked transfer needs an HTTP/1.1 answer
        self.send_response(200)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        if fault == "chunked-cut":
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(sent), sent))  # a whole chunk, but never the last "0"
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(sent)
        self.wfile.flush()
        if fault == "reset-mid-body":
            self._reset()

    def _reset(self) -> None:
        """Drop the connection without a word (RST where the platform allows)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()


def _first(parsed: dict[str, list[str]]) -> dict[str, str]:
    return {key: values[0] for key, values in parsed.items()}
