"""Email intake: attachments through the door with the message as origin; signature images and invites
recorded as ignored (never held); forwarded .eml opened; plus-address routing; ``cdr upload message.eml``."""

from __future__ import annotations

import io
from email.message import EmailMessage

import pytest
from click.testing import CliRunner

from ingest.cli import cli
from ingest.errors import NotFound
from ingest.mail import Route, route_of, take_message
from tests.conftest import catalog_rows as rows
from tests.records import record, render

PNG = b"\x89PNG\r\n\x1a\n" + b"logo" * 50


def carrier_email(to="cdrs@billing.example.com", invite: bool = True) -> bytes:
    message = EmailMessage()
    message["From"] = "billing@herotel.example"
    message["To"] = to
    message["Subject"] = "Your October CDRs"
    message["Message-ID"] = "<oct-cdrs@herotel.example>"
    message.set_content("Please find attached.\n\n-- \nHero Billing")
    message.add_alternative("<p>Please find attached.</p><img src='cid:logo'><img src='cid:x'>", subtype="html")
    html = message.get_payload()[1]
    html.add_related(PNG, maintype="image", subtype="png", cid="<logo>", filename="logo.png")
    html.add_related(PNG[::-1], maintype="image", subtype="png", cid="<x>", filename="x-icon.png")
    message.add_attachment(render([record(1), record(2)]), maintype="text", subtype="csv",
                           filename="hero_cdr_20261001.csv")
    message.add_attachment(render([record(3, CallType="Line Rental", BParty="", Seconds="0", UTCDateTime="")],
                                  carrier="techconnections"), maintype="text", subtype="csv",
                           filename="TC_SDR_202610.csv")
    if invite:
        message.add_attachment(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", maintype="text", subtype="calendar",
                               filename="invite.ics")
    return message.as_bytes()


def test_two_files_and_the_images_and_invite_ignored_then_the_same_message_again_is_held(app):
    first = take_message(app, io.BytesIO(carrier_email()), source="email")
    assert sorted((r.name, r.status) for r in first) == [
        ("TC_SDR_202610.csv", "queued"), ("hero_cdr_20261001.csv", "queued"), ("invite.ics", "ignored"),
        ("logo.png", "ignored"), ("x-icon.png", "ignored")]
    again = take_message(app, io.BytesIO(carrier_email()), source="email")
    assert sorted((r.name, r.status, r.reason) for r in again) == [
        ("TC_SDR_202610.csv", "held", "duplicate-content"), ("hero_cdr_20261001.csv", "held", "duplicate-content"),
        ("invite.ics", "ignored", "not-a-carrier-file"), ("logo.png", "ignored", "not-a-carrier-file"),
        ("x-icon.png", "ignored", "not-a-carrier-file")]
    stored = {r["name"]: r for r in rows(app) if r["status"] == "queued"}
    assert stored["TC_SDR_202610.csv"]["type"] == "sdr" and stored["hero_cdr_20261001.csv"]["carrier"] == "hero"
    origin = stored["hero_cdr_20261001.csv"]["origin"]
    assert "billing@herotel.example" in origin and "<oct-cdrs@herotel.example>" in origin and "October" in origin
    logo = next(r for r in rows(app) if r["name"] == "logo.png")
    assert "inline image" in logo["error"] and app.staging.path_of(logo["blob"]).read_bytes() == PNG


def forwarded(maintype: str, subtype: str, filename: str) -> bytes:
    """Staff forwarding the carrier's email as an attachment."""
    forward = EmailMessage()
    forward["From"] = "staff@reseller.example"
    forward["To"] = "cdrs@billing.example.com"
    forward["Subject"] = "Fwd: Your October CDRs"
    forward.set_content("FYI")
    forward.add_attachment(carrier_email(), maintype=maintype, subtype=subtype, filename=filename)
    return forward.as_bytes()


@pytest.mark.parametrize("maintype, subtype, filename", [
    ("message", "rfc822", "original.eml"),  # this builder sends it base64-encoded, as some clients do
    ("application", "octet-stream", "Oct CDRs.eml"),  # an .eml forwarded as a plain file
])
def test_a_forwarded_email_is_opened_and_its_attachments_taken(app, maintype, subtype, filename):
    got = take_message(app, io.BytesIO(forwarded(maintype, subtype, filename)), source="email")
    assert sorted(r.name for r in got if r.status == "queued") == ["TC_SDR_202610.csv", "hero_cdr_20261001.csv"]


def test_plus_addresses_route_carrier_and_cadence(app):
    assert route_of("cdrs@billing.example.com", app) == Route()
    assert route_of("CDRS+hero@billing.example.com", app) == Route("hero", None)
    assert route_of("cdrs+techconnections-monthly@billing.example.com", app) == Route("techconnections", "monthly")
    with pytest.raises(NotFound):
        route_of("someone@billing.example.com", app)
    with pytest.raises(NotFound):
        route_of("cdrs+nobody@billing.example.com", app)


def routed_email(to: str, *attachments: tuple[str, bytes]) -> bytes:
    """A carrier's email to ``to`` with ``attachments`` (name, bytes), and its signature logo inline."""
    message = EmailMessage()
    message["From"] = "noreply@carrier.example"
    message["To"] = to
    message["Subject"] = "CDR"
    message["Message-ID"] = "<routed@carrier.example>"
    message.set_content("attached")
    message.add_alternative("<p>attached</p><img src='cid:logo'>", subtype="html")
    message.get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<logo>", filename="logo.png")
    for name, data in attachments:
        message.add_attachment(data, maintype="text", subtype="csv", filename=name)
    return message.as_bytes()


def test_a_routed_attachment_whose_name_tells_nothing_loads_as_the_carriers_default_type(app):
    from ingest.load import load_queued

    email = routed_email("cdrs+hero-daily@billing.example.com", ("October usage export.csv", render([record(9)])))
    got = {r.name: r for r in take_message(app, io.BytesIO(email), source="email")}
    assert (got["October usage export.csv"].status, got["logo.png"].status) == ("queued", "ignored")
    [loaded] = load_queued(app)
    assert (loaded.status, loaded.loaded) == ("loaded", 1)
    stored = next(r for r in rows(app) if r["name"] == "October usage export.csv")
    assert (stored["carrier"], stored["type"], stored["cadence"], stored["format"]) == ("hero", "cdr", "daily", "csv")


def test_a_routed_attachment_a_file_rule_matches_takes_type_and_cadence_from_the_rule(app):
    email = routed_email("cdrs+hero-daily@billing.example.com", ("hero_cdr_202609.csv", render([record(9)])))
    take_message(app, io.BytesIO(email), source="email")
    stored = next(r for r in rows(app) if r["name"] == "hero_cdr_202609.csv")
    assert (stored["status"], stored["type"], stored["cadence"], stored["billing_period"]) == (
        "queued", "cdr", "monthly", "2026-09")


def test_the_carriers_default_type_applies_to_its_route_without_a_cadence(make_config):
    from tests.conftest import app_with

    app = app_with(make_config, '[carriers.fees]\nparser = "hero"\ndefault_type = "sdr"\n')
    try:
        email = routed_email("cdrs+fees@billing.example.com", ("fees.csv", render([record(9)])))
        take_message(app, io.BytesIO(email), source="email")
        stored = next(r for r in rows(app) if r["name"] == "fees.csv")
        assert (stored["status"], stored["carrier"], stored["type"], stored["cadence"]) == (
            "queued", "fees", "sdr", None)
    finally:
        app.close()


def test_default_type_must_be_cdr_or_sdr(make_config):
    from ingest.config import load_config
    from ingest.errors import ConfigError

    with pytest.raises(ConfigError, match=r"carriers.fees.default_type.*cdr, sdr"):
        load_config(make_config('[carriers.fees]\nparser = "hero"\ndefault_type = "calls"\n'), env={})


def test_cdr_upload_takes_a_saved_email(app, tmp_path):
    saved = tmp_path / "message.eml"
    saved.write_bytes(carrier_email())
    result = CliRunner().invoke(cli, ["--config", str(app.config.path), "upload", str(saved)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "hero_cdr_20261001.csv: loaded, 2 records" in result.output
    assert "logo.png: ignored (not-a-carrier-file)" in result.output
    missing = CliRunner().invoke(cli, ["--config", str(app.config.path), "upload", str(tmp_path / "a.csv")])
    assert missing.exit_code != 0


def test_zip_and_gzip_attachments_are_unpacked_as_for_any_file(app):
    import gzip
    import zipfile

    day1, day2, day3 = (render([record(n)]) for n in (1, 2, 3))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("hero_cdr_20261002.csv", day2)
        zipped.writestr("hero_cdr_20261003.csv", day3)
    message = EmailMessage()
    message["From"] = "billing@herotel.example"
    message["To"] = "cdrs@billing.example.com"
    message["Subject"] = "compressed"
    message.set_content("attached")
    message.add_attachment(gzip.compress(day1), maintype="application", subtype="gzip",
                           filename="hero_cdr_20261001.csv.gz")
    message.add_attachment(archive.getvalue(), maintype="application", subtype="zip", filename="october.zip")
    got = take_message(app, io.BytesIO(message.as_bytes()), source="email")
    assert sorted((r.name, r.status) for r in got) == [
        ("hero_cdr_20261001.csv.gz", "queued"), ("hero_cdr_20261002.csv", "queued"),
        ("hero_cdr_20261003.csv", "queued")]
    stored = {r["name"]: r for r in rows(app)}
    assert stored["hero_cdr_20261002.csv"]["container"] == "october.zip"
    # The gzip is fingerprinted decompressed: the plain file mailed later is its duplicate.
    plain = EmailMessage()
    plain["Subject"] = "again, uncompressed"
    plain.set_content("attached")
    plain.add_attachment(day1, maintype="text", subtype="csv", filename="hero_cdr_20261001.csv")
    [again] = take_message(app, io.BytesIO(plain.as_bytes()), source="email")
    assert (again.status, again.reason) == ("held", "duplicate-content")
