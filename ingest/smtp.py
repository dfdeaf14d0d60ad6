"""The inbound SMTP listener (aiosmtpd): carriers and staff mail files to ``cdrs@<domain>``.

- Only the configured domain and mailbox are accepted, with the plus-address routes of :mod:`ingest.mail`
  (``cdrs+hero@``, ``cdrs+hero-daily@``); any other recipient is refused with 550 at RCPT, so the
  listener is never an open relay.
- A message larger than ``max_message_bytes`` is refused (552).
- A message is accepted (250) only after its attachments are staged and recorded in the catalog; if that
  fails for a reason that may pass (a busy database), the sender is told to try again (451), so no mail is
  lost: the sending server keeps it and retries.

Configured as ``[smtp]`` in the TOML (``ingest.config.SmtpSettings``): ``listen`` (default 127.0.0.1), ``port`` (default 2525), ``domain``
(required), ``mailbox`` (default "cdrs"), ``max_message_bytes`` (default 50 MiB).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import ssl
from typing import Callable

from .app import App
from .config import SmtpSettings
from .errors import CdrError, NotFound
from .intake import Received
from .mail import route_of, take_message
from .secrets import resolve_secret

log = logging.getLogger(__name__)

SOURCE = "smtp"  # the source name (``files.source``) of the files the listener takes


class CdrMailHandler:
    """aiosmtpd handler: RCPT checks the address, DATA stages the attachments before answering."""

    def __init__(self, app: App, settings: SmtpSettings, source: str = SOURCE,
                 on_taken: Callable[[list[Received]], None] | None = None):
        self.app = app
        self.settings = settings
        self.source = source
        self.on_taken = on_taken

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rsplit("@", 1)[-1].lower()
        try:
            if domain != self.settings.domain:
                raise NotFound(f"not a domain served here: {domain}")
            route = route_of(address, self.app, self.settings.mailbox)
        except NotFound:
            return "550 5.1.1 No such mailbox here (this server relays nothing)"
        if not self.settings.sender_allowed(route.carrier, envelope.mail_from or ""):
            return "550 5.7.1 Sender not allowed to send files for this carrier"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def _note(self, error: str | None, collected: int) -> None:
        """Record the listener's last success or error for ``cdr status``, as a source's pass is. Best effort:
        the answer to the sender never depends on it (the catalog may be the very thing that is busy)."""
        from .catalog import sources as source_states

        try:
            with self.app.catalog.write() as conn:
                source_states.record_pass(conn, self.source, error=error, collected=collected, next_run=None)
        except Exception as exc:  # noqa: BLE001 - told, never raised into the SMTP session
            log.debug("smtp: could not record the listener's state: %s", exc)

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", errors="surrogateescape")
        recipient = envelope.rcpt_tos[0]
        route = route_of(recipient, self.app, self.settings.mailbox)
        loop = asyncio.get_running_loop()
        try:
            received = await loop.run_in_executor(None, lambda: take_message(
                self.app, io.BytesIO(content), source=self.source, recipient=recipient, route=route,
                actor=f"smtp:{envelope.mail_from}"))
        except CdrError as exc:
            log.warning("smtp: message from %s not taken: %s", envelope.mail_from, exc)
            await loop.run_in_executor(None, self._note, f"a message from {envelope.mail_from} not taken: {exc}", 0)
            if exc.transient:
                return "451 4.3.0 Temporarily unable to store the message; try again later"
            return "554 5.6.0 The message could not be taken"
        except Exception as exc:  # a fault of ours: the sender keeps the message and retries; never a half-truth 250
            log.exception("smtp: message from %s not taken", envelope.mail_from)
            await loop.run_in_executor(None, self._note, f"a message from {envelope.mail_from} not taken: "
                                                         f"{type(exc).__name__}", 0)
            return "451 4.3.0 Temporarily unable to store the message; try again later"
        # One line for the message; each of its files is told by the intake door (file_taken, file_held ...).
        log.info("smtp message taken", extra={"event": "mail_taken", "source": self.source,
                                              "sender": envelope.mail_from, "files": len(received)})
        await loop.run_in_executor(None, self._note, None, len(received))
        if received and self.on_taken is not None:
            self.on_taken(received)
        return f"250 OK: {len(received)} attachment(s) staged"


class SmtpListener:
    """Runs the SMTP server in its own thread (aiosmtpd's Controller). ``on_taken`` is called with the files
    of each message taken (the daemon wakes its loader)."""

    def __init__(self, app: App, settings: SmtpSettings,
                 on_taken: Callable[[list[Received]], None] | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.settings = settings
        options: dict = {}
        if settings.tls_cert_file:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
            options.update(tls_context=context, require_starttls=settings.require_tls)
        if settings.auth_username:
            password = resolve_secret(settings.auth_options, "auth_password")

            def authenticate(server, session, envelope, mechanism, auth_data):
                good = (isinstance(auth_data, LoginPassword)
                        and hmac.compare_digest(auth_data.login, settings.auth_username.encode())
                        and hmac.compare_digest(auth_data.password, password.reveal().encode()))
                return AuthResult(success=good, handled=False)

            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=True)
        self.controller = Controller(CdrMailHandler(app, settings, on_taken=on_taken), hostname=settings.listen,
                                     port=settings.port, data_size_limit=settings.max_message_bytes, server_hostname=settings.domain,
                                     **options)

    @property
    def port(self) -> int:
        return self.controller.server.sockets[0].getsockname()[1]

    def start(self) -> "SmtpListener":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> "SmtpListener":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
