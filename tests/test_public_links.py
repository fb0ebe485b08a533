"""The public links over real HTTP (uvicorn + httpx), on SQLite and PostgreSQL: the alias confirmation
link (A3) and the open-tracking pixel (E6); the signed tokens behind them (hypothesis).
"""

from __future__ import annotations

import email
import email.policy
import html as htmllib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from cycle_helpers import paris, setup_store
from dunningops import outgoing, signing
from dunningops.app import App
from dunningops.cli import cli
from dunningops.dunning.aliases import LINK_DAYS, LINK_PURPOSE, deliver_outbox, resend, verify
from dunningops.dunning.cycle import run_send
from dunningops.dunning.runconfig import RunConfig
from dunningops.outgoing import tracking
from dunningops.outgoing.letter import Letter
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.spec.models import Settings
from dunningops.store.activity import recent_activity
from dunningops.store.meta import signing_key
from dunningops.store.schema import AliasRow, MessageRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.transport.message import Address, OutgoingMessage
from dunningops.web import create_app

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\n",
    invoices="I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\n",
)
SENT = paris(2026, 12, 1)  # the confirmations go out
COURTESY = paris(2026, 12, 4)  # the courtesy reminder is due


@dataclass
class Site:
    app: App
    base: str  # the live server
    folder: Path  # the maildir the emails go to
    clock: list[datetime]

    def at(self, when: datetime) -> None:
        self.clock[0] = when

    def factory(self, config):
        return MaildirTransport(self.folder)

    def mails(self) -> list[email.message.EmailMessage]:
        new = self.folder / "new"
        # In the order written: "seconds.Mmicroseconds…" (microseconds not zero-padded).
        order = lambda f: tuple(int(n) for n in re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", f.name).groups())
        files = sorted(new.iterdir(), key=order) if new.exists() else []
        return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]

    def deliver(self) -> int:
        with self.app.session() as s:
            config = RunConfig.from_store(s)
        return deliver_outbox(self.app.store, config, MaildirTransport(self.folder), self.clock[0])

    def local(self, link: str) -> str:
        """A link of an email, on the live server (the email names the configured host and port)."""
        parts = urlsplit(link)
        return self.base + parts.path

    def aliases(self) -> list[tuple]:
        with self.app.session() as s:
            return [
                tuple(r)
                for r in s.execute(
                    select(AliasRow.id, AliasRow.verified, AliasRow.verified_at, AliasRow.verification_token).order_by(
                        AliasRow.id
                    )
                )
            ]

    def key(self) -> bytes:
        with self.app.session() as s:
            return signing_key(s)


@pytest.fixture
def site(database_url: str, v1: Path, tmp_path: Path, live_server):
    clock = [SENT]
    app = App(v1, database_url, env={}, clock=lambda: clock[0])
    setup_store(app.store, v1, tmp_path, verify=(), **LEDGER)
    yield Site(app, live_server(create_app(app)), tmp_path / "maildir", clock)
    app.store.dispose()


def _confirmation(site: Site, email_address: str) -> tuple[str, str, str]:
    """The latest confirmation to ``email_address``: its text, its link and its code."""
    mail = [m for m in site.mails() if m["To"].addresses[0].addr_spec == email_address][-1]
    text = mail.get_body(("plain",)).get_content()
    link = re.search(r"^Confirm: (\S+)$", text, re.MULTILINE).group(1)
    code = re.search(r"dunningops alias verify (\S+)", text).group(1)
    return text, link, code


def _text(page: str) -> str:
    """What a reader sees of a page's main part."""
    main = re.search(r"<main>(.*)</main>", page, re.DOTALL).group(1)
    return htmllib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", main))).strip()


def _self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)\s*=", page, re.IGNORECASE)  # nothing loaded, nowhere to go
    assert "http" not in page


# --- A3: the confirmation link -----------------------------------------------------------------


def test_a3_link_shows_then_confirms_and_the_send_cycle_uses_the_alias(site: Site, snapshot):
    assert site.deliver() == 3
    text, link, code = _confirmation(site, "billing@acme.fr")
    # The link on the configured address (no public_url: http://host:port), the code as a fallback, after it.
    assert link.startswith("http://127.0.0.1:8780/l/alias/")
    assert text.index("Confirm: ") < text.index("dunningops alias verify")
    assert text.replace(link, "<link>").replace(code, "<code>") == snapshot(name="email")
    before = site.aliases()

    site.at(SENT + timedelta(hours=2))
    with httpx.Client() as http:
        # Mail scanners fetch links: a GET (or HEAD) shows the page and changes nothing.
        page = http.get(site.local(link))
        assert page.status_code == 200 and http.head(site.local(link)).status_code == 200
        assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert 'Confirm that Acme SAS may send reminders as "Acme Billing" <billing@acme.fr>.' in _text(page.text)
        assert '<form method="post"' in page.text
        _self_contained(page.text)
        assert _text(page.text) == snapshot(name="confirm page")
        assert site.aliases() == before

        done = http.post(site.local(link))
        assert done.status_code == 200
        _self_contained(done.text)
        assert _text(done.text) == snapshot(name="confirmed page")
        billing = next(a for a in site.aliases() if a[0] == "billing")
        # As `alias verify CODE` records it: verified, when, and the code used up.
        assert billing[1:] == (True, SENT + timedelta(hours=2), None)
        assert [a for a in site.aliases() if a[0] != "billing"] == [a for a in before if a[0] != "billing"]

        # On the record, once: a link has no member behind it.
        with site.app.session() as s:
            assert [(a["via"], a["action"], a["target"], a["member_id"]) for a in recent_activity(s)] == [
                ("link", "alias.verify", "billing", None)
            ]

        again = http.post(site.local(link))
        assert again.status_code == 200 and again.text == http.get(site.local(link)).text
        assert _text(again.text) == snapshot(name="already confirmed page")
        assert next(a for a in site.aliases() if a[0] == "billing") == billing  # verified_at not moved
        with site.app.session() as s:
            assert len(recent_activity(s)) == 1

    # The code of the same email is spent too; the send cycle now writes from the alias.
    with site.app.session() as s, pytest.raises(Exception, match="matches no alias"):
        verify(s, code, SENT)
    run_send(site.app.store, at=COURTESY, transport_factory=site.factory)
    reminder = next(m for m in site.mails() if m["X-Dunningops-Customer"] == "C1")
    assert reminder["From"] == "Acme Billing <billing@acme.fr>"


def test_a3_the_code_still_verifies_and_the_link_then_says_already_confirmed(site: Site):
    site.deliver()
    _, link, code = _confirmation(site, "credit@acme.fr")
    with site.app.session() as s:
        assert verify(s, code, SENT) == "credit"
    with httpx.Client() as http:
        page = http.post(site.local(link))
    assert page.status_code == 200 and _text(page.text).startswith("Already confirmed")


def _tampered(token: str) -> list[str]:
    payload, mac = token.split(".")
    flip = lambda s, i: s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1 :]
    return [
        flip(payload, 3) + "." + mac,  # another value or expiry
        payload + "." + flip(mac, 5),  # another signature
        payload + "." + mac[:-1],  # cut short
        token + "A",
        payload,
        "",
        "x" * 60,
        "%E2%82%AC" + token,  # non-ASCII
    ]


def test_a3_altered_guessed_expired_or_misused_links_are_404_and_change_nothing(site: Site, snapshot):
    site.deliver()
    _, link, _ = _confirmation(site, "billing@acme.fr")
    token = urlsplit(link).path.rsplit("/", 1)[1]
    value = signing.verify(site.key(), LINK_PURPOSE, token, SENT)
    assert value is not None
    expires = SENT + timedelta(days=LINK_DAYS)
    bad = [
        *_tampered(token),
        signing.sign(site.key(), tracking.PURPOSE, value, expires),  # the pixel's purpose
        signing.sign(b"another store's key", LINK_PURPOSE, value, expires),
        signing.sign(site.key(), LINK_PURPOSE, "billing\nbilling@acme.fr\n" + "0" * 64, expires),  # a guessed code hash
    ]
    before = site.aliases()
    with httpx.Client() as http:
        for t in bad:
            for method in ("GET", "POST"):
                answer = http.request(method, f"{site.base}/l/alias/{t}")
                assert answer.status_code == 404, (method, t)
        page = http.get(f"{site.base}/l/alias/{bad[0]}")
        assert _text(page.text) == snapshot(name="not found page")
        _self_contained(page.text)
        assert site.aliases() == before

        # Good until it expires, 7 days after it was sent (the code itself never expires).
        site.at(expires - timedelta(seconds=1))
        assert http.get(site.local(link)).status_code == 200
        site.at(expires)
        assert http.get(site.local(link)).status_code == 404
        assert http.post(site.local(link)).status_code == 404
    assert site.aliases() == before


def test_a3_a_resent_confirmation_makes_the_older_link_stop_working(site: Site):
    site.deliver()
    _, old, _ = _confirmation(site, "agent@recouvrement-externe.com")
    site.at(SENT + timedelta(days=1))
    with site.app.session() as s:
        resend(s, "agency", site.clock[0])
    assert site.deliver() == 1
    _, new, _ = _confirmation(site, "agent@recouvrement-externe.com")
    assert new != old
    with httpx.Client() as http:
        assert http.get(site.local(old)).status_code == 404
        assert http.post(site.local(old)).status_code == 404
        assert next(a for a in site.aliases() if a[0] == "agency")[1] is False
        assert http.post(site.local(new)).status_code == 200
        assert next(a for a in site.aliases() if a[0] == "agency")[1] is True


def test_a3_a4_links_of_a_removed_or_replaced_alias_are_404(site: Site, v1: Path):
    site.deliver()
    _, credit, _ = _confirmation(site, "credit@acme.fr")
    _, agency, _ = _confirmation(site, "agent@recouvrement-externe.com")
    config = v1 / "dunningops.yaml"
    text = config.read_text()
    text = text.replace("  - id: credit\n    email: credit@acme.fr\n    display_name: Acme Credit\n", "")
    text = text.replace("agent@recouvrement-externe.com", "lenoir@recouvrement-externe.com")  # A4: replaced
    config.write_text(text)
    apply_config(site.app.store, load_config(v1), now=SENT, actor="t", git_commit=None)
    with httpx.Client() as http:
        for link in (credit, agency):
            assert http.get(site.local(link)).status_code == 404
            assert http.post(site.local(link)).status_code == 404
    assert [a[:2] for a in site.aliases()] == [("agency", False), ("billing", False)]


def test_public_base_url():
    base = dict(
        company={"name": "A", "country": "FR", "timezone": "Europe/Paris", "locale": "fr_FR", "currency": "EUR"},
        deliverability={"fallback_sender": "r@a.fr"},
    )
    assert signing.public_base_url(Settings.model_validate(base)) == "http://127.0.0.1:8780"
    daemon = {"host": "::1", "port": 9000}
    assert signing.public_base_url(Settings.model_validate({**base, "daemon": daemon})) == "http://[::1]:9000"
    daemon = {"public_url": "https://dunning.acme.fr/links/"}
    assert signing.public_base_url(Settings.model_validate({**base, "daemon": daemon})) == "https://dunning.acme.fr/links"


# --- E6: the open-tracking pixel ---------------------------------------------------------------


def _message(html: str | None, message_id: str = "<m1@acme.fr>", date: datetime = SENT) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=message_id,
        from_=Address("billing@acme.fr"),
        to=[Address("paul@martin.fr")],
        subject="Reminder",
        text="Hello",
        html=html,
        date=date,
    )


def _pixel_token(html: str) -> str:
    return re.search(r'<img src="[^"]*/l/o/([^"/]+)\.gif" width="1" height="1"', html).group(1)


def test_e6_with_pixel_puts_a_signed_image_in_the_html_part_only():
    key = b"k" * 32
    page = "<html><body><p>Hello</p></body></html>"
    tracked = tracking.with_pixel(_message(page), "https://links.acme.fr/", key)
    assert tracked.text == "Hello" and tracked.message_id == "<m1@acme.fr>"
    assert tracked.html.startswith('<html><body><p>Hello</p><img src="https://links.acme.fr/l/o/')
    assert tracked.html.endswith(
        '.gif" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px"></body></html>'
    )
    token = _pixel_token(tracked.html)
    # The Message-ID, for 180 days from the message's Date, for the pixel only.
    assert signing.verify(key, tracking.PURPOSE, token, SENT + timedelta(days=179)) == "<m1@acme.fr>"
    assert signing.verify(key, tracking.PURPOSE, token, SENT + timedelta(days=180)) is None
    assert signing.verify(key, LINK_PURPOSE, token, SENT) is None
    # A fragment gets it at the end; a text-only message is returned as it is.
    assert tracking.with_pixel(_message("<p>Hi</p>"), "http://h:1", key).html.startswith("<p>Hi</p><img ")
    plain = _message(None)
    assert tracking.with_pixel(plain, "http://h:1", key) is plain
    # The last </body> (whatever its case), not one quoted earlier.
    two = tracking.with_pixel(_message("<p>&lt;/body&gt;</BODY >"), "http://h:1", key).html
    assert two.startswith("<p>&lt;/body&gt;<img ") and two.endswith("></BODY >")


def _record_one(site: Site, html: str) -> str:
    """A message sent through the one way out; its Message-ID."""
    with site.app.session() as s:
        settings_ = RunConfig.from_store(s).settings
    letter = Letter(message=_message(html, message_id=""), kind="proof", track_opens=signing.public_base_url(settings_))
    [outcome] = outgoing.send(site.app.store, MaildirTransport(site.folder), [letter], at=site.clock[0], domain="acme.fr")
    assert outcome.status == "sent"
    return outcome.message_id


def _opened(site: Site) -> dict[str, datetime | None]:
    with site.app.session() as s:
        return {mid: at for mid, at in s.execute(select(MessageRow.message_id, MessageRow.opened_at))}


def test_e6_pixel_records_the_first_open_only(site: Site):
    first, second = _record_one(site, "<p>One</p>"), _record_one(site, "<p>Two</p>")
    [one, two] = [m for m in site.mails() if m["Message-ID"] in (first, second)]
    one_token = _pixel_token(one.get_body(("html",)).get_content())
    two_token = _pixel_token(two.get_body(("html",)).get_content())
    with httpx.Client() as http:
        site.at(SENT + timedelta(hours=3))
        gif = http.get(f"{site.base}/l/o/{one_token}.gif")
        assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
        assert gif.headers["cache-control"] == "no-store" and gif.content.startswith(b"GIF89a") and len(gif.content) < 64
        assert _opened(site) == {first: SENT + timedelta(hours=3), second: None}
        site.at(SENT + timedelta(days=2))
        assert http.get(f"{site.base}/l/o/{one_token}.gif").status_code == 200
        assert _opened(site) == {first: SENT + timedelta(hours=3), second: None}  # never moved again

        for bad in [*_tampered(two_token), signing.sign(site.key(), LINK_PURPOSE, second, SENT + timedelta(days=9))]:
            assert http.get(f"{site.base}/l/o/{bad}.gif").status_code == 404
        # A genuine token of an email the history does not have: nothing to record.
        unknown = signing.sign(site.key(), tracking.PURPOSE, "<nope@acme.fr>", SENT + timedelta(days=9))
        assert http.get(f"{site.base}/l/o/{unknown}.gif").status_code == 404
        site.at(SENT + timedelta(days=180))  # expired
        assert http.get(f"{site.base}/l/o/{two_token}.gif").status_code == 404
        assert _opened(site) == {first: SENT + timedelta(hours=3), second: None}


def test_e6_reminder_of_a_plan_that_tracks_opens_end_to_end(
    database_url: str, v1: Path, tmp_path: Path, live_server, smtp_server
):
    plans = v1 / "plans.yaml"
    plans.write_text(plans.read_text().replace("    reply_to: ar@acme.fr\n", "    reply_to: ar@acme.fr\n    track_opens: true\n"))
    clock = [COURTESY]
    app = App(v1, database_url, env={}, clock=lambda: clock[0])
    try:
        setup_store(app.store, v1, tmp_path, **LEDGER)
        from outgoing_helpers import smtp_factory

        report = run_send(app.store, at=COURTESY, transport_factory=smtp_factory(smtp_server.host, smtp_server.port))
        assert report.sent == 1
        [reminder] = [m for m in smtp_server.messages() if m["X-Dunningops-Customer"] == "C1"]
        html = reminder.get_body(("html",)).get_content()
        src = re.search(r'<img src="([^"]+)" width="1" height="1"', html).group(1)
        assert src.startswith("http://127.0.0.1:8780/l/o/") and "/l/o/" not in reminder.get_body(("plain",)).get_content()
        base = live_server(create_app(app))
        with httpx.Client() as http:
            clock[0] = COURTESY + timedelta(hours=1)
            assert http.get(base + urlsplit(src).path).status_code == 200
            clock[0] = COURTESY + timedelta(hours=5)
            assert http.get(base + urlsplit(src).path).status_code == 200
            token = urlsplit(src).path.removeprefix("/l/o/").removesuffix(".gif")
            assert http.get(f"{base}/l/o/{_tampered(token)[0]}.gif").status_code == 404
        with app.session() as s:
            opened = s.execute(select(MessageRow.kind, MessageRow.opened_at).where(MessageRow.opened_at.is_not(None))).all()
        assert opened == [("reminder", COURTESY + timedelta(hours=1))]
        # The history shows it: `dunningops messages` says "sent, opened".
        shown = CliRunner().invoke(cli, ["messages", "--config", str(app.config_dir), "--database-url", app.url])
        assert shown.exit_code == 0 and "sent, opened" in shown.output, shown.output
    finally:
        app.store.dispose()


def test_e6_no_pixel_unless_the_plan_tracks_opens(site: Site):
    with site.app.session() as s:
        s.execute(update(AliasRow).values(verified=True))
    run_send(site.app.store, at=COURTESY, transport_factory=site.factory)
    reminder = next(m for m in site.mails() if m["X-Dunningops-Customer"] == "C1")
    assert "/l/o/" not in reminder.get_body(("html",)).get_content()


# --- the tokens -------------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LATER = NOW + timedelta(days=1)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/% é"


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=1, max_size=64), purpose=st.sampled_from(["alias", "open", "rating"]), value=st.text(max_size=300))
def test_signing_round_trip_purpose_and_expiry(key: bytes, purpose: str, value: str):
    token = signing.sign(key, purpose, value, LATER)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)  # safe in a URL path as it is
    assert signing.verify(key, purpose, token, NOW) == value
    assert signing.verify(key, purpose, token, LATER) is None
    assert signing.verify(key, purpose + "x", token, NOW) is None
    assert signing.verify(key + b"x", purpose, token, NOW) is None


@settings(max_examples=500, deadline=None)
@given(value=st.text(max_size=80), data=st.data())
def test_signing_verify_never_accepts_a_modified_token(value: str, data):
    key = b"the store's key"
    token = signing.sign(key, "open", value, LATER)
    edit = data.draw(st.sampled_from(["replace", "insert", "delete", "swap"]))
    i = data.draw(st.integers(0, len(token) - 1))
    c = data.draw(st.sampled_from(ALPHABET))
    if edit == "replace":
        changed = token[:i] + c + token[i + 1 :]
    elif edit == "insert":
        changed = token[:i] + c + token[i:]
    elif edit == "delete":
        changed = token[:i] + token[i + 1 :]
    else:
        j = data.draw(st.integers(0, len(token) - 1))
        chars = list(token)
        chars[i], chars[j] = chars[j], chars[i]
        changed = "".join(chars)
    if changed != token:
        assert signing.verify(key, "open", changed, NOW) is None
