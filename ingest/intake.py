"""The intake door: the one function every source calls with a byte stream and where it came from.

:func:`receive` stages the exact bytes (content-addressed, fsynced, renamed into place), fingerprints the
content in the same pass (xxh3-128; gzip and zip are fingerprinted decompressed, one catalog file per zip
member), classifies each file by the caller's word or the carrier's rules (see :func:`classify`), checks for
potential duplicates, and records it all in the catalog in one transaction, with what the source said the
file is (``given_*``: ``cdr retry`` classifies it again from these, see :func:`origin_again`):

- no carrier is named and no carrier rule recognises it -> ``ignored``, with the reason (never dropped
  silently, never held);
- the same content was received before and not discarded -> ``held``, ``duplicate-content``, linked to
  every earlier copy;
- the carrier has ``same_name_rule`` and an earlier file of it had the same name -> ``held``,
  ``duplicate-name``;
- the archive is corrupt or breaks the decompression limits -> ``failed`` (the bytes stay staged);
- otherwise -> ``queued`` for loading.

A crash before the commit leaves an orphan blob and no catalog row, so the next attempt succeeds without a
false duplicate hold; after it, a complete row. Collectors that must record remote state atomically with
the file (issue: "committed in the same transaction as the file's catalog row") pass ``in_transaction``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import BinaryIO, Callable

from sqlalchemy import Connection

from . import faults
from .app import App
from .catalog import files as catalog_files
from .core import EXTENSION_FORMATS, Classification, Origin  # Origin lives in core; imported from here too
from .errors import InvalidState
from .logs import file_event
from .staging import Member, StagedBlob, safe_name

log = logging.getLogger(__name__)

UPLOAD = "upload"  # the source name of manual uploads


@dataclass(frozen=True)
class Received:
    id: int
    name: str
    status: str
    reason: str | None


def receive(
    app: App,
    stream: BinaryIO,
    origin: Origin,
    *,
    actor: str | None = None,
    in_transaction: Callable[[Connection, list[Received]], None] | None = None,
) -> list[Received]:
    """Take one incoming file through the door; return one entry per catalog file created."""
    actor = actor or app.actor
    if origin.carrier is not None:
        app.config.carrier(origin.carrier)  # an unknown carrier is refused before anything is staged
    blob = app.staging.receive(stream)
    faults.point("intake.staged")
    return record(app, blob, origin, actor=actor, in_transaction=in_transaction)


def record(
    app: App,
    blob: StagedBlob,
    origin: Origin,
    *,
    actor: str,
    in_transaction: Callable[[Connection, list[Received]], None] | None = None,
) -> list[Received]:
    """Catalog a staged blob: classify, check for duplicates, insert; one transaction."""
    name = safe_name(origin.name)
    results: list[Received] = []
    with app.catalog.write() as conn:
        app.catalog.serialize(conn, "intake")
        if origin.delivery is not None:
            again = catalog_files.same_delivery(conn, origin.source, origin.delivery, blob.key)
            if again:
                results = [Received(r["id"], r["name"], r["status"], r["reason"]) for r in again]
                if in_transaction is not None:
                    in_transaction(conn, results)
                return results
        if blob.error is not None:  # classified by its name all the same: a corrected file may replace it
            values = _row(blob, None, origin, name, None, classify(app, name, None, origin))
            values.update(status="failed", reason="unreadable", error=f"{name}: {blob.error}")
            file_id = catalog_files.add_file(conn, values, actor=actor, why=values["error"])
            results.append(Received(file_id, name, "failed", "unreadable"))
        for member in blob.members:
            results.append(_record_member(app, conn, blob, member, origin, name, actor))
        decided = _decisions(conn, results)
        if in_transaction is not None:
            in_transaction(conn, results)
        faults.point("intake.before-commit")
    for received in results:  # committed: each file taken is told once, with what was decided for it
        file_event(log, "file_taken", received.id, received.name, origin.source, f"taken from {origin.source}",
                   status=received.status)
    _log_decisions(origin.source, results, decided)
    return results


def _decisions(conn: Connection, results: list[Received]) -> dict[int, tuple[str | None, str]]:
    """For the log, read in the deciding transaction: each file not queued, its error (why it was ignored or
    failed) and, held, the earlier files it repeats (``#1 (x.csv, loaded)``)."""
    decided = {}
    for received in results:
        if received.status != "queued":
            links = catalog_files.links_of(conn, received.id) if received.status == "held" else []
            error = catalog_files.get_file(conn, received.id)["error"]
            decided[received.id] = (error, catalog_files.repeats_text(links))
    return decided


def _log_decisions(source: str, results: list[Received], decided: dict[int, tuple[str | None, str]]) -> None:
    """One line for each file held, ignored or failed at the door (after the commit)."""
    for received in results:
        if received.id not in decided:
            continue
        error, repeats = decided[received.id]
        if received.status == "held":
            file_event(log, "file_held", received.id, received.name, source,
                       f"held ({received.reason}): repeats {repeats}", reason=received.reason, repeats=repeats)
        elif received.status in ("ignored", "failed"):
            file_event(log, f"file_{received.status}", received.id, received.name, source,
                       f"{received.status} ({received.reason}): {error}", reason=received.reason, error=error)


def _record_member(app: App, conn: Connection, blob: StagedBlob, member: Member, origin: Origin, name: str,
                   actor: str) -> Received:
    values, links, why = _decide(app, conn, blob, member, origin, name)
    file_id = catalog_files.add_file(conn, values, actor=actor, why=why)
    catalog_files.add_links(conn, file_id, links)
    return Received(file_id, values["name"], values["status"], values["reason"])


def _decide(app: App, conn: Connection, blob: StagedBlob, member: Member, origin: Origin,
            name: str) -> tuple[dict, list[catalog_files.Link], str]:
    """The catalog values (status included) for one member, the files it may repeat, and why."""
    member_name = safe_name(member.name) if member.name is not None else name
    container = name if member.name is not None else None
    found = classify(app, member_name, container, origin)
    values = _row(blob, member, origin, member_name, container, found)

    if origin.ignore is not None:
        values.update(status="ignored", reason="not-a-carrier-file", error=origin.ignore)
        return values, [], origin.ignore
    if found.carrier is None:
        why = f"no carrier's file rule matches {member_name!r} (or more than one carrier's does)"
        values.update(status="ignored", reason="unrecognised", error=why)
        return values, [], why

    links = [catalog_files.Link(i, "duplicate-content") for i in catalog_files.earlier_by_content(conn, member.fingerprint)]
    if app.config.carrier(found.carrier).same_name_rule:
        links += [catalog_files.Link(i, "duplicate-name")
                  for i in catalog_files.earlier_by_name(conn, found.carrier, member_name)]
    if links:
        reason = links[0].kind
        earlier = ", ".join(f"#{i}" for i in sorted({link.earlier_id for link in links}))
        values.update(status="held", reason=reason, error=None)
        return values, links, f"potential duplicate ({reason}) of {earlier}"

    values.update(status="queued", reason=None, error=None)
    return values, [], f"received from {origin.source}"


def reconsider(app: App, file_id: int, *, actor: str) -> list[Received]:
    """Take an ``ignored`` or unreadable (``failed``/``unreadable``) file through the door again, in place:
    re-examine its staged bytes under the current limits and classify it by the current rules. The file
    keeps its id; zip members that only now can be read become new files beside it."""
    with app.catalog.read() as conn:
        row = catalog_files.get_file(conn, file_id)
    unreadable = row["status"] == "failed" and row["reason"] == "unreadable"
    if row["status"] != "ignored" and not unreadable:
        raise InvalidState(f"file {file_id} is {row['status']}; only ignored or unreadable files are re-examined")
    blob = app.staging.examine(row["blob"])
    origin = origin_again(app, row)
    name = safe_name(origin.name)
    members = blob.members if unreadable else [m for m in blob.members if m.name == row["member"]]
    with app.catalog.write() as conn:
        app.catalog.serialize(conn, "intake")
        if blob.error is not None or not members:
            error = f"{name}: {blob.error or 'the member can no longer be read'}"
            catalog_files.transition(conn, file_id, row["status"], allowed_from=(row["status"],), actor=actor,
                                     action="retried", why=f"still unreadable: {error}", error=error)
            return [Received(file_id, row["name"], row["status"], row["reason"])]
        values, links, why = _decide(app, conn, blob, members[0], origin, name)
        status = values.pop("status")
        catalog_files.transition(conn, file_id, status, allowed_from=(row["status"],), actor=actor,
                                 action="retried", why=why, **values)
        catalog_files.add_links(conn, file_id, links)
        results = [Received(file_id, values["name"], status, values["reason"])]
        results += [_record_member(app, conn, blob, member, origin, name, actor) for member in members[1:]]
        decided = _decisions(conn, results)
    _log_decisions(origin.source, results, decided)
    return results


def origin_again(app: App, row: dict) -> Origin:
    """The file's origin as first offered, to classify it again: what its source said it is, as stored
    with it (``given_*``: a dir mapping, a mail route, a drop folder's settings, an upload's flags), and
    that it is not a carrier file if its source knew that (an email's signature image stays ignored).

    A file that stored nothing given (received before ``given_*`` was kept) falls back to its own
    classification, which for an ignored or unreadable file is what its source gave, over its source's
    configured carrier/type/cadence/format."""
    given = Classification(row["given_carrier"], row["given_type"], row["given_cadence"], row["given_period"],
                           row["given_format"])
    if given == Classification():
        spec = next((s for s in app.config.sources if s.name == row["source"]), None)
        options = spec.options if spec is not None else {}
        configured = Classification(carrier=options.get("carrier"), file_type=options.get("type"),
                                    cadence=options.get("cadence"), file_format=options.get("format"))
        kept = Classification(row["carrier"], row["type"], row["cadence"], row["billing_period"])
        given = kept.merged_over(configured)
    return Origin(source=row["source"], name=row["container"] or row["name"], location=row["origin"],
                  delivery=row["delivery"], carrier=given.carrier, file_type=given.file_type,
                  cadence=given.cadence, billing_period=given.billing_period, file_format=given.file_format,
                  ignore=row["error"] if row["reason"] == "not-a-carrier-file" else None)


def classify(app: App, name: str, container: str | None, origin: Origin) -> Classification:
    """What a file is, from what its source says (``origin.given``) and the carrier's file rules (tried on
    the member's name, then its archive's).

    - A source that says the type (an upload, a dir mapping or drop folder with a type) is taken at its
      word; the rules fill in only what it leaves out.
    - A source that names the carrier but not the type routes the file to that carrier (``cdrs+hero@``,
      ``cdrs+hero-daily@``, a source's ``carrier``): the carrier's rules decide type, cadence and period if
      one matches; otherwise the source's cadence applies and the type is the carrier's ``default_type``.
    - Naming no carrier, the rules of every carrier are tried (none or two matching: no carrier).

    The format, if neither says it, comes from the name's extension, else the carrier's default format."""
    given = origin.given
    found = None
    for candidate in (name, container):
        if candidate and found is None:
            found = app.config.classify(candidate, given.carrier)
    found = found or Classification()
    if given.file_type or found.file_type is None:
        merged = given.merged_over(found)
    else:  # routed to the carrier and one of its rules matches: the rule decides type, cadence and period
        merged = replace(found.merged_over(given), file_format=given.file_format or found.file_format)
    if merged.carrier and merged.file_type is None:
        merged = replace(merged, file_type=app.config.carrier(merged.carrier).default_type)
    if merged.file_format is None:
        merged = replace(merged, file_format=format_from_name(name))
    if merged.carrier and merged.file_format is None:
        merged = replace(merged, file_format=app.config.carrier(merged.carrier).file_format)
    return merged


def format_from_name(name: str) -> str | None:
    path = PurePosixPath(name.lower())
    if path.suffix == ".gz":
        path = path.with_suffix("")
    return EXTENSION_FORMATS.get(path.suffix)


def _row(blob: StagedBlob, member: Member | None, origin: Origin, name: str, container: str | None,
         found: Classification | None) -> dict:
    given = origin.given
    found = found or given
    return {
        "name": name,
        "container": container,
        "member": member.name if member else None,
        "carrier": found.carrier,
        "type": found.file_type,
        "cadence": found.cadence,
        "format": found.file_format,
        "billing_period": found.billing_period,
        "source": origin.source,
        "origin": origin.location,
        "delivery": origin.delivery,
        "size": member.size if member else 0,
        "fingerprint": member.fingerprint if member else None,
        "blob": blob.key,
        "blob_size": blob.size,
        "compression": blob.compression,
        "given_carrier": given.carrier,
        "given_type": given.file_type,
        "given_cadence": given.cadence,
        "given_period": given.billing_period,
        "given_format": given.file_format,
    }
