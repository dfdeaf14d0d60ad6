"""Mailing security alerts: one message per join that raised any, to ``[alerts] mail_to`` through
``[alerts] smtp_host`` (plain SMTP on ``smtp_port``, as to a local relay). An alert is marked ``mailed_at`` once
the server accepted the message; a failure is kept on the alert (``mail_error``, one line) and logged, never
raised: the alerts are stored and logged whatever the mail does, and the next join sends the unmailed ones again
(:func:`mail_pending`)."""

from __future__ import annotations

import logging
import smtplib
import socket
from email.message import EmailMessage
from typing import Sequence

from sqlalchemy import select, update

from ..catalog.db import first_line
from ..catalog.files import now as _now
from ..catalog.schema import security_alerts

log = logging.getLogger("ingest.legs")
_TIMEOUT = 30


def _message(settings, rows) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(settings.mail_to)
    count = len(rows)
    message["Subject"] = f"cdr-ingest security alert: {count} call{'s' if count != 1 else ''} with no account"
    lines = ["Calls whose User-Name names no account (cdr alerts lists them all):", ""]
    for row in rows:
        lines.append(f"- alert {row['id']}: call {row['call_id']} at {row['call_time']:%Y-%m-%d %H:%M:%S} UTC, "
                     f"User-Name {row['user_name']!r}, remote address {row['remote_address'] or '-'}, "
                     f"gateway {row['gateway'] or '-'} (xDR {row['xdr_id']})")
    message.set_content("\n".join(lines) + "\n")
    return message


def mail_alerts(app, alert_ids: Sequence[int]) -> bool:
    """Mail the alerts ``alert_ids`` in one message; True when the server accepted it."""
    settings = app.config.network.alerts
    if not alert_ids or not settings.mails:
        return False
    with app.catalog.read() as conn:
        rows = [dict(r) for r in conn.execute(select(security_alerts).where(security_alerts.c.id.in_(alert_ids))
                                              .order_by(security_alerts.c.id)).mappings()]
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=_TIMEOUT) as smtp:
            smtp.send_message(_message(settings, rows))
    except (OSError, smtplib.SMTPException, socket.timeout) as exc:
        error = first_line(exc)
        log.warning("security alerts %s not mailed to %s: %s", ", ".join(str(i) for i in alert_ids),
                    ", ".join(settings.mail_to), error)
        with app.catalog.write() as conn:
            conn.execute(update(security_alerts).where(security_alerts.c.id.in_(alert_ids)).values(mail_error=error))
        return False
    with app.catalog.write() as conn:
        conn.execute(update(security_alerts).where(security_alerts.c.id.in_(alert_ids))
                     .values(mailed_at=_now(), mail_error=None))
    return True


def mail_pending(app) -> int:
    """Mail every alert not mailed yet (one message); how many were mailed."""
    with app.catalog.read() as conn:
        ids = list(conn.execute(select(security_alerts.c.id).where(security_alerts.c.mailed_at.is_(None))
                                .order_by(security_alerts.c.id)).scalars())
    return len(ids) if mail_alerts(app, ids) else 0


__all__ = ["mail_alerts", "mail_pending"]
