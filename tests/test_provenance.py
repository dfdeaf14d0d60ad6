"""``cdr retry`` keeps what the collector knew: the carrier, type, cadence, period and format a source gave a
file (a dir mapping, a mail route, an upload's flags) are stored with it when it is received (``given_*``),
and a retry classifies it again with them, not with the source's top-level options."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage

from sqlalchemy import update

from ingest import admin
from ingest.catalog.schema import files
from ingest.collectors import collector_for
from ingest.intake import Origin, receive
from ingest.mail import take_message
from tests.conftest import app_with
from tests.conftest import catalog_rows as rows
from tests.records import record, render
from tests.remote_contract import dirs_toml, put

GIVEN = ("given_carrier", "given_type", "given_cadence", "given_period", "given_format")
LIMITED = "[intake]\nmax_zip_members = 1\n"


def two_member_zip() -> bytes:
    """An archive whose member names tell no carrier anything."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("usage-1.csv", render([record(1)]))
        archive.writestr("usage-2.csv", render([record(2)]))
    return buffer.getvalue()


def share_toml(path) -> str:
    """A directory source whose one dir mapping says: Hero's daily CDRs, in csv."""
    return ('[[sources]]\nname = "share"\nkind = "directory"\nstable_listings = 1\n'
            + dirs_toml([{"path": str(path), "carrier": "hero", "type": "cdr", "cadence": "daily", "format": "csv"}]))


def routed_email(*attachments: tuple[str, bytes, str]) -> bytes:
    """A carrier's email to the Hero daily route with ``attachments`` (name, bytes, subtype)."""
    message = EmailMessage()
    message["From"] = "noreply@carrier.example"
    message["To"] = "cdrs+hero-daily@billing.example.com"
    message["Subject"] = "usage"
    message.set_content("attached")
    for name, data, subtype in attachments:
        message.add_attachment(data, maintype="application" if subtype != "png" else "image", subtype=subtype,
                               filename=name)
    return message.as_bytes()


def by_name(app) -> dict[str, dict]:
    return {r["name"]: r for r in rows(app)}


def test_what_a_source_said_a_file_is_is_stored_with_it(app, tmp_path):
    path = tmp_path / "fees.csv"
    path.write_bytes(render([record(1)]))
    [uploaded] = admin.upload(app, path, carrier="hero", file_type="sdr", cadence="monthly", period="2026-09",
                              file_format="csv")
    take_message(app, routed_email(("usage.csv", render([record(2)]), "csv")), source="email")
    receive(app, io.BytesIO(render([record(3)])), Origin("elsewhere", "hero_cdr_20261003.csv"))

    stored = by_name(app)
    assert tuple(stored["fees.csv"][c] for c in GIVEN) == ("hero", "sdr", "monthly", "2026-09", "csv")
    assert tuple(stored["usage.csv"][c] for c in GIVEN) == ("hero", None, "daily", None, None)
    # Said nothing: nothing given, though the carrier's rules classified it.
    assert tuple(stored["hero_cdr_20261003.csv"][c] for c in GIVEN) == (None,) * 5
    assert stored["hero_cdr_20261003.csv"]["carrier"] == "hero"


def test_a_zip_from_a_dir_mapping_that_failed_for_a_limit_comes_back_with_its_carrier(make_config, tmp_path):
    share = tmp_path / "share"
    put(share / "export.zip", two_member_zip())
    app = app_with(make_config, LIMITED + share_toml(share))
    try:
        [failed] = collector_for(app, app.config.source("share")).collect().received
        assert (failed.status, failed.reason) == ("failed", "unreadable")
    finally:
        app.close()

    app = app_with(make_config, share_toml(share))  # the limit raised
    try:
        again = admin.retry(app, failed.id)
        assert sorted((r.name, r.status) for r in again) == [("usage-1.csv", "queued"), ("usage-2.csv", "queued")]
        stored = by_name(app)
        for name in ("usage-1.csv", "usage-2.csv"):
            row = stored[name]
            assert (row["carrier"], row["type"], row["cadence"], row["format"], row["container"]) == (
                "hero", "cdr", "daily", "csv", "export.zip")
        assert [r.status for r in admin.load_now(app, again).values()] == ["loaded", "loaded"]
    finally:
        app.close()


def test_a_routed_zip_that_failed_for_a_limit_keeps_its_route_on_retry(make_config):
    app = app_with(make_config, LIMITED)
    try:
        got = take_message(app, routed_email(("export.zip", two_member_zip(), "zip")), source="email")
        [failed] = [r for r in got if r.status == "failed"]
    finally:
        app.close()

    app = app_with(make_config, "")
    try:
        again = admin.retry(app, failed.id)
        stored = by_name(app)
        assert sorted((r.name, r.status) for r in again) == [("usage-1.csv", "queued"), ("usage-2.csv", "queued")]
        members = ("usage-1.csv", "usage-2.csv")
        assert {(stored[n]["carrier"], stored[n]["type"], stored[n]["cadence"]) for n in members} == {
            ("hero", "cdr", "daily")}
    finally:
        app.close()


def test_a_routed_attachment_ignored_before_default_type_existed_is_queued_on_retry(app):
    [got] = take_message(app, routed_email(("usage.csv", render([record(1)]), "csv")), source="email")
    # As the code before given_* and default_type left it: ignored, its route kept only in its own columns.
    with app.catalog.write() as conn:
        conn.execute(update(files).where(files.c.id == got.id).values(
            status="ignored", reason="unrecognised", type=None, error="no file rule of carrier 'hero' matches",
            **{column: None for column in GIVEN}))

    [again] = admin.retry(app, got.id)

    row = by_name(app)["usage.csv"]
    assert (again.status, row["carrier"], row["type"], row["cadence"]) == ("queued", "hero", "cdr", "daily")


def test_a_signature_image_on_a_routed_email_stays_ignored_on_retry(app):
    got = take_message(app, routed_email(("usage.csv", render([record(1)]), "csv"), ("logo.png", b"\x89PNG", "png")),
                       source="email")
    [logo] = [r for r in got if r.name == "logo.png"]
    assert (logo.status, logo.reason) == ("ignored", "not-a-carrier-file")

    [again] = admin.retry(app, logo.id)

    assert (again.status, again.reason) == ("ignored", "not-a-carrier-file")
    assert "image/png" in by_name(app)["logo.png"]["error"]


def test_a_format_the_source_says_wins_over_the_carriers_default_when_a_rule_decides_the_type(make_config):
    app = app_with(make_config, '[carriers.acme]\nparser = "hero"\nformat = "csv"\n'
                                '[[carriers.acme.files]]\npattern = "ACME_{year}{month}*"\ntype = "sdr"\n'
                                'cadence = "monthly"\n')
    try:
        # A folder routed to acme, saying the format (pipe) but not the type: the rule decides type and cadence.
        [routed] = receive(app, io.BytesIO(b"x"), Origin("acme-drop", "ACME_202610.txt", carrier="acme",
                                                         cadence="daily", file_format="pipe"))
        [unmatched] = receive(app, io.BytesIO(b"y"), Origin("acme-drop", "usage.txt", carrier="acme",
                                                            cadence="daily"))
        stored = by_name(app)
        routed_row, unmatched_row = stored["ACME_202610.txt"], stored["usage.txt"]
        assert (routed_row["type"], routed_row["cadence"], routed_row["billing_period"], routed_row["format"]) == (
            "sdr", "monthly", "2026-10", "pipe")
        # No rule matches: the route's cadence, the carrier's default_type, the format from the extension.
        assert (unmatched_row["type"], unmatched_row["cadence"], unmatched_row["format"]) == ("cdr", "daily", "txt")
        assert (routed.status, unmatched.status) == ("queued", "queued")
    finally:
        app.close()
