"""The Billing Feed stand-in (tests/feed_server.py) behaves as the carriers document."""

from __future__ import annotations

import csv
import io
import json
import socket
import urllib.error
import urllib.request
from http.client import IncompleteRead, RemoteDisconnected
from urllib.parse import urlencode

import pytest

from tests.feed_server import CONTENT_TYPES, DELIMITERS, FeedServer
from tests.records import LAYOUTS, record

AUTH = {"login": "81234567", "password": "Monkey123"}
CRLF_HEADER = ",".join(LAYOUTS["hero"]).encode() + b"\r\n"


def fetch(feed: FeedServer, query: dict | None = None, form: dict | None = None, timeout: float = 5):
    """(status, content type, body) for one request."""
    url = feed.url + ("?" + urlencode(query) if query else "")
    data = urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers.get_content_type(), answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get_content_type(), exc.read()


def ids(body: bytes, sep: str = ",") -> list[int]:
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline=""), delimiter=sep))
    return [int(r["ID"]) for r in rows]


@pytest.fixture
def feed():
    with FeedServer() as server:
        server.add(*(record(i) for i in range(1, 6)))
        yield server


@pytest.fixture
def tc():
    with FeedServer(carrier="techconnections") as server:
        server.add(record(1), record(2, CallType="Line Rental", BParty=""), record(3, CallType="Local"),
                   record(4, CallType="Broadband"), record(5, CallType="Service"), record(6, CallType="Number Charge"))
        yield server


def test_url_and_lifecycle():
    server = FeedServer()
    server.start()
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/billingfeed.php")
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "?fromid=0", timeout=1)


def test_get_csv_default(feed):
    status, ctype, body = fetch(feed, {**AUTH, "fromid": 2})
    assert status == 200 and ctype == "text/csv"
    assert body.startswith(CRLF_HEADER)
    assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")
    assert ids(body) == [3, 4, 5]
    assert feed.requests[-1]["method"] == "GET"
    assert feed.requests[-1]["params"]["fromid"] == "2"


def test_post_takes_priority_over_get(feed):
    status, _, body = fetch(feed, {**AUTH, "fromid": 0, "format": "json"}, {"fromid": "3", "format": "csv"})
    assert status == 200 and ids(body) == [4, 5]
    seen = feed.requests[-1]
    assert seen["method"] == "POST"
    assert seen["query"]["fromid"] == "0" and seen["form"]["fromid"] == "3"
    assert seen["params"] == {**AUTH, "fromid": "3", "format": "csv"}


def test_post_only(feed):
    status, _, body = fetch(feed, form={**AUTH, "fromid": "4"})
    assert status == 200 and ids(body) == [5]


def test_paging_by_fromid_and_page_size():
    with FeedServer(page_size=2) as server:
        server.add(record(3), record(1), record(2))
        server.records.append(record(5))  # tests may append directly
        server.add(record(4))
        seen, last = [], 0
        while True:
            got = ids(fetch(server, {**AUTH, "fromid": last})[2])
            assert len(got) <= 2
            if not got:
                break
            seen += got
            last = got[-1]
        assert seen == [1, 2, 3, 4, 5]
        assert len(server.requests) == 4


@pytest.mark.parametrize("fmt, sep", [("csv", ","), ("txt", "\t"), ("pipe", "|")])
def test_delimited_formats(feed, fmt, sep):
    feed.add(record(6, TextDesc2=f"with{sep}sep"))
    status, _, body = fetch(feed, {**AUTH, "fromid": 4, "format": fmt})
    assert status == 200
    lines = body.split(b"\r\n")
    assert lines[0] == sep.join(LAYOUTS["hero"]).encode()
    assert lines[-1] == b""
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline=""), delimiter=sep))
    assert [r["ID"] for r in rows] == ["5", "6"]
    assert rows[1]["TextDesc2"] == f"with{sep}sep"
    assert list(rows[0]) == list(LAYOUTS["hero"])


def test_json_format(feed):
    status, ctype, body = fetch(feed, {**AUTH, "fromid": 3, "format": "json"})
    assert status == 200 and ctype == "application/json"
    rows = json.loads(body)
    assert [r["ID"] for r in rows] == ["4", "5"]
    assert list(rows[0]) == list(LAYOUTS["hero"])
    assert all(isinstance(v, str) for r in rows for v in r.values())


@pytest.mark.parametrize("fmt", ["csv", "txt", "pipe"])
def test_empty_delimited_is_header_only(feed, fmt):
    body = fetch(feed, {**AUTH, "fromid": 99, "format": fmt})[2]
    sep = {"csv": ",", "txt": "\t", "pipe": "|"}[fmt]
    assert body == sep.join(LAYOUTS["hero"]).encode() + b"\r\n"


def test_empty_json(feed):
    assert json.loads(fetch(feed, {**AUTH, "fromid": 99, "format": "json"})[2]) == []


def test_techconnections_layout(tc):
    header = fetch(tc, {**AUTH, "fromid": 0})[2].split(b"\r\n")[0].decode().split(",")
    assert header == list(LAYOUTS["techconnections"])
    assert header[header.index("BillDate") + 1] == "Date"


def test_date_and_hour_filters(feed):
    feed.add(record(10, UTCDateTime="2026-10-02 07:00:00"), record(11, UTCDateTime="2026-10-02 08:59:59"),
             record(12, UTCDateTime="2026-10-02 08:00:00"), record(13, UTCDateTime="2026-10-03 08:00:00"))
    assert ids(fetch(feed, {**AUTH, "fromid": 0, "date": "2026-10-02"})[2]) == [10, 11, 12]
    assert ids(fetch(feed, {**AUTH, "fromid": 0, "date": "2026-10-02", "hour": "8"})[2]) == [11, 12]
    assert ids(fetch(feed, {**AUTH, "fromid": 11, "date": "2026-10-02", "hour": "08"})[2]) == [12]
    assert ids(fetch(feed, {**AUTH, "fromid": 0, "date": "2026-10-01", "hour": "0"})[2]) == [1, 2, 3, 4, 5]
    assert ids(fetch(feed, {**AUTH, "fromid": 0, "date": "2026-10-04"})[2]) == []


def test_callsonly_and_servicesonly(tc):
    assert ids(fetch(tc, {**AUTH, "fromid": 0})[2]) == [1, 2, 3, 4, 5, 6]
    assert ids(fetch(tc, {**AUTH, "fromid": 0, "callsonly": 1})[2]) == [1, 3]
    assert ids(fetch(tc, {**AUTH, "fromid": 0, "servicesonly": 1})[2]) == [2, 4, 5, 6]
    assert ids(fetch(tc, {**AUTH, "fromid": 0, "servicesonly": 0})[2]) == [1, 2, 3, 4, 5, 6]


def test_hero_ignores_callsonly(feed):
    feed.add(record(6, CallType="Line Rental"))
    assert ids(fetch(feed, {**AUTH, "fromid": 0, "callsonly": 1})[2]) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("creds", [{"login": "81234567", "password": "nope"}, {"login": "x", "password": "Monkey123"},
                                   {"password": "Monkey123"}, {}])
def test_invalid_login(feed, creds):
    assert fetch(feed, {**creds, "fromid": 0}) == (200, "text/plain", b"ERROR: Invalid login")


def test_custom_credentials():
    with FeedServer(login="u", password="p") as server:
        assert fetch(server, {**AUTH, "fromid": 0})[2] == b"ERROR: Invalid login"
        assert fetch(server, {"login": "u", "password": "p", "fromid": 0})[2] == CRLF_HEADER


def test_fromid_required(feed):
    assert fetch(feed, AUTH) == (200, "text/plain", b"ERROR: fromid is required")


def test_fault_html(feed):
    feed.fault = "html"
    assert fetch(feed, {**AUTH, "fromid": 0}) == (200, "text/html", b"<html><body>Maintenance</body></html>")
    feed.fault = None
    assert ids(fetch(feed, {**AUTH, "fromid": 4})[2]) == [5]


def test_fault_error500(feed):
    feed.fault = "error500"
    assert fetch(feed, {**AUTH, "fromid": 0})[0] == 500
    assert fetch(feed, {**AUTH, "fromid": 0})[0] == 500  # until cleared


def test_fault_error_text(feed):
    feed.fault = "error-text"
    assert fetch(feed, {**AUTH, "fromid": 0})[2] == b"ERROR: database unavailable"


@pytest.mark.parametrize("fmt, sep", [("csv", ","), ("txt", "\t"), ("pipe", "|")])
def test_fault_garbage_delimited(feed, fmt, sep):
    feed.fault = "garbage"
    status, _, body = fetch(feed, {**AUTH, "fromid": 0, "format": fmt})
    assert status == 200
    rows = list(csv.reader(io.StringIO(body.decode(), newline=""), delimiter=sep))
    assert len(rows) >= 2 and len(rows[1]) != len(rows[0])


def test_fault_garbage_json(feed):
    feed.fault = "garbage"
    body = fetch(feed, {**AUTH, "fromid": 0, "format": "json"})[2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_fault_json_object(feed):
    feed.fault = "json-object"
    status, _, body = fetch(feed, {**AUTH, "fromid": 0, "format": "json"})
    assert status == 200 and json.loads(body) == {"error": "x"}


def test_fault_slow(feed):
    feed.fault = "slow"
    feed.slow_seconds = 0.3
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)) as caught:
        fetch(feed, {**AUTH, "fromid": 0}, timeout=0.1)
    if isinstance(caught.value, urllib.error.URLError):
        assert isinstance(caught.value.reason, (TimeoutError, socket.timeout))
    status, _, body = fetch(feed, {**AUTH, "fromid": 4}, timeout=2)  # a patient client gets its answer
    assert status == 200 and ids(body) == [5]


def test_fault_slow_cut_short_by_stop():
    import threading
    import time

    server = FeedServer().start()
    server.fault, server.slow_seconds = "slow", 30
    errors = []

    def client():
        try:
            fetch(server, {**AUTH, "fromid": 0}, timeout=10)
        except Exception as exc:  # noqa: BLE001 - any failure is expected
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    server.stop()
    thread.join(5)
    assert time.monotonic() - started < 2 and errors


def test_fault_reset(feed):
    feed.fault = "reset"
    with pytest.raises((RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        fetch(feed, {**AUTH, "fromid": 0})
    feed.fault = None
    assert ids(fetch(feed, {**AUTH, "fromid": 4})[2]) == [5]


@pytest.mark.parametrize("empty_body", [b"", b"\r\n", b" \r\n\t\r\n"])
@pytest.mark.parametrize("fmt", ["csv", "txt", "pipe"])
def test_empty_body_is_how_a_caught_up_feed_answers(feed, fmt, empty_body):
    feed.empty_body = empty_body
    assert fetch(feed, {**AUTH, "fromid": 99, "format": fmt}) == (200, CONTENT_TYPES[fmt], empty_body)
    assert ids(fetch(feed, {**AUTH, "fromid": 4, "format": fmt})[2], DELIMITERS[fmt]) == [5]  # records: as before
    assert json.loads(fetch(feed, {**AUTH, "fromid": 99, "format": "json"})[2]) == []


def read_cut(feed: FeedServer) -> BaseException:
    """The error that ends the read of an answer the server cuts short."""
    with urllib.request.urlopen(f"{feed.url}?{urlencode({**AUTH, 'fromid': 0})}", timeout=5) as answer:
        with pytest.raises((IncompleteRead, ConnectionResetError)) as caught:
            answer.read()
    return caught.value


@pytest.mark.parametrize("fault, error", [("cut-short", IncompleteRead), ("chunked-cut", IncompleteRead),
                                          ("reset-mid-body", ConnectionResetError)])
def test_fault_cut_short(feed, fault, error):
    whole = feed.render(feed.records, "csv")
    feed.fault = fault
    caught = read_cut(feed)
    assert isinstance(caught, error)
    if error is IncompleteRead:
        assert whole.endswith(b",Default\r\n") and caught.partial == whole[:-5]  # cut inside the last field
        feed.cut_bytes = len(whole) // 2
        assert read_cut(feed).partial == whole[: len(whole) - feed.cut_bytes]
    feed.fault = None
    assert fetch(feed, {**AUTH, "fromid": 0})[2] == whole
