"""Email intake, the part every way of receiving mail shares (a saved ``.eml``, SMTP, IMAP, a Maildir):
a message's attachments through the intake door, each with the message as its origin.

- Addresses route: ``cdrs@`` (carrier and type from the file names), ``cdrs+<carrier>@`` (the carrier when
  names don't tell it) and ``cdrs+<carrier>-daily@`` / ``-monthly@`` (the cadence too). A routed attachment
  is never ignored for its name: the carrier's file rules decide type and cadence if one matches, else the
  route's cadence applies and the type is the carrier's ``default_type`` (see ``intake.classify``).
- Parts that are not carrier files (images such as signature logos, calendar invites, signatures, vCards)
  are staged and recorded as ``ignored`` with the reason: never held as potential duplicates, because every
  email from a sender carries the same ones. The message's own text is its body, not a part.
- An ``.eml`` attached to the message (staff forwarding the carrier's email) is opened and its attachments
  taken the same way. Zip and gzip attachments are unpacked by the intake door as for any file.
"""

from __future__ import annotations

import base64
import binascii
import email
import io
import quopri
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses
from typing import BinaryIO

from .app import App
from .errors import NotFound
from .intake import Origin, Received, receive
from .staging import safe_name

NOT_CARRIER_FILES = {
    "text/calendar": "a calendar invite",
    "application/ics": "a calendar invite",
    "application/pkcs7-signature": "a message signature",
    "application/x-pkcs7-signature": "a message signature",
    "application/pgp-signature": "a message signature",
    "text/vcard": "a contact card",
    "text/x-vcard": "a contact card",
}
MAX_DEPTH = 5  # forwarded messages inside forwarded messages


@dataclass(frozen=True)
class Route:
    carrier: str | None = None
    cadence: str | None = None


def route_of(address: str, app: App, mailbox: str = "cdrs") -> Route:
    """What an address says: ``cdrs@``, ``cdrs+hero@``, ``cdrs+hero-daily@``. An address the platform does not
    serve, or an unknown carrier, raises NotFound (the SMTP listener refuses it: never an open relay)."""
    local = address.rsplit("@", 1)[0].strip().lower()
    name, _, tag = local.partition("+")
    if name != mailbox:
        raise NotFound(f"no such mailbox: {address}")
    if not tag:
        return Route()
    carrier, cadence = tag, None
    for suffix in ("daily", "monthly"):
        if tag.endswith("-" + suffix):
            carrier, cadence = tag[: -len(suffix) - 1], suffix
    app.config.carrier(carrier)  # unknown carrier -> NotFound
    return Route(carrier=carrier, cadence=cadence)


def take_message(app: App, stream: BinaryIO | bytes, *, source: str, recipient: str | None = None,
                 route: Route | None = None, default_route: Route = Route(), actor: str | None = None,
                 mailbox: str = "cdrs", delivery: str | None = None) -> list[Received]:
    """Every attachment of one message (and of messages attached to it) through the intake door.

    Without ``route`` the message's recipient headers route it (see :func:`route_from_headers`), else
    ``default_route`` (a source's own carrier and cadence). With ``delivery`` (one mailbox message: the same key whenever the same message is
    offered again) each part is offered as delivery ``<delivery>#<n>``, so taking the message again after a
    crash returns the parts already recorded instead of holding them as duplicates of themselves.

    A message with no attachments at all (a "your invoice is ready, download it here" email) is itself
    staged and recorded as ``ignored`` with the reason, so it is never dropped without a trace."""
    raw = stream if isinstance(stream, bytes) else stream.read()
    message = email.message_from_bytes(raw, policy=policy.default)
    if route is None:
        route = route_from_headers(app, message, recipient, mailbox)
        if route.carrier is None:
            route = default_route
    walk = _Walk(app, source, route, actor, recipient, delivery)
    received = walk.take(message, depth=0)
    if walk.offered == 0:
        subject = str(message.get("Subject", "") or "")
        why = f"an email with no attachments (subject {subject!r}), not a carrier file"
        received += walk.offer(raw, name=f"{safe_name(subject.replace('/', '-').replace(chr(92), '-'))[:80]}.eml",
                               where=_describe(message, recipient), ignore=why, part=0)
    return received


def route_from_headers(app: App, message: EmailMessage, recipient: str | None = None,
                       mailbox: str = "cdrs") -> Route:
    """The route of the first address (the envelope recipient, then Delivered-To, X-Original-To, To, Cc)
    that is one of the platform's mailbox routes; no route (file rules decide) if none is."""
    candidates = [recipient] if recipient else []
    for header in ("Delivered-To", "X-Original-To", "To", "Cc"):
        candidates += [address for _, address in getaddresses(message.get_all(header, []))]
    for address in candidates:
        try:
            return route_of(address, app, mailbox)
        except NotFound:
            continue
    return Route()


class _Undecodable(Exception):
    """A forwarded email whose transfer encoding is broken."""


@dataclass
class _Walk:
    """One message's parts, offered to the intake door in order (``offered`` counts them)."""

    app: App
    source: str
    route: Route
    actor: str | None
    recipient: str | None
    delivery: str | None
    offered: int = 0

    def take(self, message: EmailMessage, depth: int) -> list[Received]:
        where = _describe(message, self.recipient)
        received: list[Received] = []
        for part in _leaves(message):
            ignore = None
            try:
                inner = _attached_message(part)
            except _Undecodable as exc:
                inner, ignore = None, f"a forwarded email that cannot be decoded ({exc}); kept as received"
            if inner is not None:
                if depth < MAX_DEPTH:
                    received += self.take(inner, depth + 1)
                continue
            if _is_body_text(part):
                continue
            content_type = part.get_content_type()
            payload = _raw_body(part) if ignore else (part.get_payload(decode=True) or b"")
            received += self.offer(payload, name=part.get_filename() or _unnamed(part), where=where,
                                   ignore=ignore or _not_a_carrier_file(part, content_type))
        return received

    def offer(self, payload: bytes, *, name: str, where: str, ignore: str | None,
              part: int | None = None) -> list[Received]:
        if part is None:
            self.offered += 1
            part = self.offered
        origin = Origin(source=self.source, name=name, location=where, carrier=self.route.carrier,
                        cadence=self.route.cadence, ignore=ignore,
                        delivery=f"{self.delivery}#{part}" if self.delivery is not None else None)
        return receive(self.app, io.BytesIO(payload), origin, actor=self.actor)


def _attached_message(part: EmailMessage) -> EmailMessage | None:
    """The email inside a part: a message/rfc822 part (plain, or base64/quoted-printable encoded as some
    clients send it) or an attached ``.eml`` file; None for any other part. Raises _Undecodable when
    its transfer encoding is broken."""
    content_type = part.get_content_type()
    is_eml = (part.get_filename() or "").lower().endswith(".eml")
    if content_type != "message/rfc822" and not is_eml:
        return None
    encoding = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    if content_type == "message/rfc822" and encoding not in ("base64", "quoted-printable"):
        return part.get_content()
    raw = _raw_body(part)
    try:
        decoded = base64.b64decode(raw) if encoding == "base64" else (
            quopri.decodestring(raw) if encoding == "quoted-printable" else raw)
    except (binascii.Error, ValueError) as exc:
        raise _Undecodable(f"broken {encoding}: {exc}") from None
    return email.message_from_bytes(decoded, policy=policy.default)


def _raw_body(part: EmailMessage) -> bytes:
    """A part's body exactly as transmitted (still transfer-encoded)."""
    text = part.as_bytes()
    for separator in (b"\r\n\r\n", b"\n\n"):
        at = text.find(separator)
        if at != -1:
            return text[at + len(separator):]
    return b""


def _leaves(part: EmailMessage):
    """Every non-multipart part, depth first; an attached message is yielded whole (not entered)."""
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        yield part
        return
    for sub in part.iter_parts():
        yield from _leaves(sub)


def _is_body_text(part: EmailMessage) -> bool:
    """The message's own text (plain or HTML), as opposed to a file attached to it."""
    return (part.get_content_maintype() == "text" and part.get_content_subtype() in ("plain", "html")
            and part.get_filename() is None and part.get_content_disposition() != "attachment")


def _not_a_carrier_file(part: EmailMessage, content_type: str) -> str | None:
    if content_type.startswith("image/"):
        inline = part.get_content_disposition() == "inline" or part.get("Content-ID")
        return f"an {'inline ' if inline else ''}image ({content_type}), not a carrier file"
    if content_type in NOT_CARRIER_FILES:
        return f"{NOT_CARRIER_FILES[content_type]} ({content_type}), not a carrier file"
    return None


def _unnamed(part: EmailMessage) -> str:
    subtype = part.get_content_subtype()
    return f"unnamed.{subtype or 'bin'}"


def _describe(message: EmailMessage, recipient: str | None) -> str:
    """The origin kept in the catalog: sender, recipient, subject and Message-ID."""
    fields = [f"from {message.get('From', '?')}"]
    if recipient or message.get("To"):
        fields.append(f"to {recipient or message.get('To')}")
    fields.append(f"subject {message.get('Subject', '')!r}")
    fields.append(f"message-id {message.get('Message-ID', '?')}")
    return "email " + ", ".join(fields)
