"""T8's ratings: the signed links, the rules of recording, the team's email and the public page
(over real HTTP: uvicorn + httpx), on SQLite and PostgreSQL; the widget in the send cycle's reminders.
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
from sqlalchemy import event, select, update

from cycle_helpers import paris, setup_store
from daemon_helpers import set_settings
from dunningops import signing
from dunningops.alerts import store as alert_store
from dunningops.app import App
from dunningops.dunning import aliases, compose
from dunningops.dunning.cycle import run_send
from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import ConflictError, NotFoundError
from dunningops.incidents import ratings
from dunningops.outgoing import tracking
from dunningops.store.activity import recent_activity
from dunningops.store.meta import signing_key
from dunningops.store.schema import CustomerRow, MessageRow
from dunningops.store.schema_notices import IncidentRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.web import create_app

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\nC2,Smith & Sons Ltd,GB,en_GB,EUR,bob,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\nC2,jane@smith.co.uk,Jane Smith,,,payer,true\n",
    invoices="I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\nI2,C2,FA-2,2026-11-01,2026-12-07,300.00,,EUR,,\n",
)
OPENED = paris(2026, 12, 1, 9)
NOW = paris(2026, 12, 3, 10, 15)
TEAM = "team@acme.fr"
NASTY = 'Facture <script>alert("x")</script> & "contestée"\n<b>deux</b> lignes'


@dataclass
class World:
    app: App
    clock: list[datetime]
    folder: Path

    def at(self, when: datetime) -> None:
        self.clock[0] = when

    def factory(self, config):
        return MaildirTransport(self.folder)

    def settings(self):
        with self.app.session() as s:
            return RunConfig.from_store(s).settings

    def config(self) -> RunConfig:
        with self.app.session() as s:
            return RunConfig.from_store(s)

    def key(self) -> bytes:
        with self.app.session() as s:
            return signing_key(s)

    def incident(self, customer: str = "C1", *, reference: str = "INC-0001", state: str = "open", rating=None,
                 observations: str = "La facture FA-1 est contestée.", opened_at: datetime = OPENED) -> int:
        with self.app.session() as s:
            customer_id = s.scalar(select(CustomerRow.id).where(CustomerRow.external_id == customer))
            row = IncidentRow(
                reference=reference, customer_id=customer_id, kind="dispute", observations=observations, state=state,
                origin="cli", opened_at=opened_at, closed_at=OPENED + timedelta(days=1) if state == "closed" else None,
                rating=rating, rated_at=OPENED if rating else None,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return row.id

    def close(self, incident_id: int) -> None:
        with self.app.session() as s:
            s.execute(update(IncidentRow).where(IncidentRow.id == incident_id).values(state="closed", closed_at=self.clock[0]))

    def token(self, incident_id: int, at: datetime = OPENED) -> str:
        return ratings.rating_url(self.settings(), self.key(), incident_id, at).rsplit("/", 1)[1]

    def rating(self, incident_id: int) -> tuple:
        with self.app.session() as s:
            row = s.execute(
                select(IncidentRow.rating, IncidentRow.rating_message, IncidentRow.rated_at).where(IncidentRow.id == incident_id)
            ).one()
            return tuple(row)

    def alerts(self) -> list[dict]:
        with self.app.session() as s:
            return [alert_store.get(s, a["id"]) for a in alert_store.list_alerts(s, acked=None, limit=None).rows][::-1]

    def mails(self) -> list[email.message.EmailMessage]:
        new = self.folder / "new"
        files = sorted(new.iterdir(), key=lambda f: f.stat().st_mtime_ns) if new.exists() else []
        return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def _world(url: str, config: Path, tmp: Path) -> World:
    clock = [NOW]
    folder = tmp / "maildir"
    app = App(config, url, env={}, clock=lambda: clock[0], transport_factory=lambda c: MaildirTransport(folder))
    setup_store(app.store, config, tmp, verify=("billing",), **LEDGER)
    return World(app, clock, folder)


@pytest.fixture
def world(database_url: str, v1: Path, tmp_path: Path):
    set_settings(v1, notifications=f"{{rating: {{to: [{TEAM}]}}}}")
    w = _world(database_url, v1, tmp_path)
    yield w
    w.app.store.dispose()


def _record(w: World, token: str, score, message=None):
    return ratings.record(w.app.store, token, score, message, w.clock[0])


# --- the links -----------------------------------------------------------------------------------


def test_t8_rating_url_is_signed_for_its_purpose_under_the_public_base(world: World):
    incident = world.incident()
    link = ratings.rating_url(world.settings(), world.key(), incident, OPENED)
    # No public_url in v1: the daemon's host and port.
    assert link.startswith("http://127.0.0.1:8780/l/r/")
    token = link.rsplit("/", 1)[1]
    assert signing.verify(world.key(), ratings.PURPOSE, token, OPENED) == str(incident)
    # Another purpose's check does not take it (nor the other way round).
    assert signing.verify(world.key(), aliases.LINK_PURPOSE, token, OPENED) is None
    assert signing.verify(world.key(), tracking.PURPOSE, token, OPENED) is None
    # Valid link_days (30 by default) after it was made, not a second more.
    expires = OPENED + timedelta(days=30)
    assert signing.verify(world.key(), ratings.PURPOSE, token, expires - timedelta(seconds=1)) == str(incident)
    assert signing.verify(world.key(), ratings.PURPOSE, token, expires) is None


def test_t8_forged_other_purpose_or_expired_links_record_nothing(world: World):
    incident = world.incident()
    key, settings = world.key(), world.settings()
    token = world.token(incident)
    payload, mac = token.split(".")
    forged = [
        payload + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB"),
        signing.sign(key, aliases.LINK_PURPOSE, str(incident), NOW + timedelta(days=1)),  # an alias link's purpose
        signing.sign(key, tracking.PURPOSE, str(incident), NOW + timedelta(days=1)),  # a pixel's
        signing.sign(b"another store's key", ratings.PURPOSE, str(incident), NOW + timedelta(days=1)),
        signing.sign(key, ratings.PURPOSE, "1 OR 1=1", NOW + timedelta(days=1)),  # signed, but no incident id
        signing.sign(key, ratings.PURPOSE, str(incident + 99), NOW + timedelta(days=1)),  # no such incident
        "",
        "x" * 5000,
    ]
    for t in forged:
        with pytest.raises(NotFoundError) as raised:
            _record(world, t, 5, "bien")
        assert not isinstance(raised.value, ratings.LinkExpiredError), t
        with world.app.session() as s, pytest.raises(NotFoundError):
            ratings.page(s, key, t, NOW, settings)
    # A genuine link past its date: said so (410), in the customer's language, and nothing recorded.
    world.at(OPENED + timedelta(days=30))
    with pytest.raises(ratings.LinkExpiredError) as expired:
        _record(world, token, 5, "bien")
    assert expired.value.http_status == 410 and expired.value.language == "fr"
    assert world.rating(incident) == (None, None, None) and world.alerts() == []


# --- the rules -----------------------------------------------------------------------------------


def test_t8_an_open_incident_is_rated_then_re_rated_and_the_last_rating_counts(world: World):
    incident = world.incident()
    token = world.token(incident)
    rated = _record(world, token, "4", "  Merci, réglé vite.\r\n  ")
    assert rated.changed and rated.previous is None and rated.team == (TEAM,)
    assert world.rating(incident) == (4, "Merci, réglé vite.", NOW)

    later = NOW + timedelta(hours=3)
    world.at(later)
    again = _record(world, token, 2, "")
    assert again.changed and again.previous == 4
    assert world.rating(incident) == (2, None, later)  # rated_at moved; an empty message is none

    # The same rating again (a second click): nothing changes, nobody is told twice.
    world.at(later + timedelta(minutes=1))
    same = _record(world, token, 2, "  ")
    assert not same.changed and same.alert_id is None
    assert world.rating(incident) == (2, None, later)
    # A re-rating is a new alert; the record keeps both.
    titles = [a["title"] for a in world.alerts()]
    assert titles == [
        "Boulangerie Martin SARL rated request INC-0001 4/5: “Merci, réglé vite.”",
        "Boulangerie Martin SARL changed their rating of request INC-0001 from 4/5 to 2/5",
    ]
    with world.app.session() as s:
        assert [(a["via"], a["action"], a["target"]) for a in recent_activity(s)] == [("link", "incident.rate", "INC-0001")] * 2


def test_t8_a_closed_incident_takes_a_first_rating_but_never_a_change(world: World):
    incident = world.incident(state="closed")
    token = world.token(incident)
    assert _record(world, token, 5, "Parfait").changed
    assert world.rating(incident) == (5, "Parfait", NOW)
    world.at(NOW + timedelta(hours=1))
    with pytest.raises(ConflictError, match="closed and was rated already"):
        _record(world, token, 1, "Finalement non")
    assert world.rating(incident) == (5, "Parfait", NOW)
    # Submitting the same again is no change: it is taken as done (a double click), and still once.
    assert not _record(world, token, 5, "Parfait").changed
    assert len(world.alerts()) == 1


def test_t8_an_incident_rated_while_open_no_longer_changes_once_closed(world: World):
    incident = world.incident()
    token = world.token(incident)
    _record(world, token, 3)
    world.close(incident)
    with pytest.raises(ConflictError):
        _record(world, token, 4)
    assert world.rating(incident)[0] == 3


@pytest.mark.parametrize("score", [None, "", "0", "6", "4.5", "-1", "٣", "a", 0, 9])
def test_t8_a_score_outside_1_to_5_is_refused(world: World, score):
    incident = world.incident()
    with pytest.raises(ratings.RatingInputError) as refused:
        _record(world, world.token(incident), score)
    assert refused.value.field == "score" and refused.value.http_status == 400
    assert world.rating(incident) == (None, None, None) and world.alerts() == []


def test_t8_the_message_is_trimmed_cleaned_and_bounded(world: World):
    incident = world.incident()
    token = world.token(incident)
    with pytest.raises(ratings.RatingInputError) as long:
        _record(world, token, 3, "x" * (ratings.MAX_MESSAGE + 1))
    assert long.value.field == "message" and world.rating(incident)[0] is None
    # 2,000 characters once trimmed are fine; NUL and other control characters go (PostgreSQL refuses NUL).
    _record(world, token, 3, "   " + "é" * ratings.MAX_MESSAGE + "\n\n")
    assert world.rating(incident)[1] == "é" * ratings.MAX_MESSAGE
    _record(world, token, 4, "ligne 1\r\nligne\x00 2\x07\tfin")
    assert world.rating(incident)[1] == "ligne 1\nligne 2\tfin"


# --- the team's email ----------------------------------------------------------------------------


def test_t8_the_team_is_emailed_once_per_rating_through_the_alert_channel(world: World, snapshot):
    incident = world.incident()
    rated = _record(world, world.token(incident), 4, "Merci pour votre réactivité,\nmême si c'était long.")
    (alert,) = world.alerts()
    assert alert["kind"] == "rating" and alert["channels"] == {"in_app": "shown", "email": "pending"}
    assert alert["details"]["message"] == "Merci pour votre réactivité,\nmême si c'était long."

    report = ratings.tell_team(world.app.store, rated, config=world.config(), transport_factory=world.factory, env={}, at=NOW)
    assert report is not None and report.counts == {"in_app": 1, "email": 1}
    # Announcing again (a retry, `alerts announce`, the daemon's sweep) sends nothing more: claimed once.
    ratings.tell_team(world.app.store, rated, config=world.config(), transport_factory=world.factory, env={}, at=NOW)
    from dunningops.alerts.channels import announce_recorded

    announce_recorded(world.app.store, [rated.alert_id], at=NOW, transport_factory=world.factory, env={})
    (mail,) = world.mails()
    assert [a.addr_spec for a in mail["To"].addresses] == [TEAM]
    assert mail["From"].addresses[0].addr_spec == "reminders@mail.dunningops.local"
    assert world.alerts()[0]["channels"]["email"] == "sent"
    text = mail.get_body(("plain",)).get_content()
    # The customer, the incident, the score, the message and when.
    assert mail["Subject"] == snapshot(name="subject")
    assert text == snapshot(name="text")
    # Recorded as the team's email: kind alert, no customer (never counted against the caps, T6).
    with world.app.session() as s:
        assert [(m.kind, m.customer_id) for m in s.scalars(select(MessageRow))] == [("alert", None)]


def _team(v1: Path, tmp: Path, **sections: str) -> tuple[tuple[str, ...], dict]:
    set_settings(v1, **sections)
    tmp.mkdir()
    w = _world(f"sqlite:///{tmp}/state.db", v1, tmp)
    try:
        rated = _record(w, w.token(w.incident()), 5)
        return rated.team, w.alerts()[0]["channels"]
    finally:
        w.app.store.dispose()


def test_t8_the_team_is_rating_to_else_alerts_email_to_else_the_owners(v1: Path, tmp_path: Path):
    alerts = "{email_to: [credit-team@acme.fr]}"
    assert _team(v1, tmp_path / "a", alerts=alerts, notifications=f"{{rating: {{to: [{TEAM}]}}}}") == (
        (TEAM,),
        {"in_app": "shown", "email": "pending"},
    )
    assert _team(v1, tmp_path / "b", alerts=alerts, notifications="{}")[0] == ("credit-team@acme.fr",)
    # Neither: the owners (alice in v1).
    assert _team(v1, tmp_path / "c", alerts="{}", notifications="{}")[0] == ("alice@acme.fr",)
    # The alert's channels say otherwise: the in-app list only.
    assert _team(v1, tmp_path / "d", alerts="{rating: [in_app]}", notifications="{}")[1] == {"in_app": "shown"}


# --- the public page over real HTTP --------------------------------------------------------------


@pytest.fixture
def site(world: World, live_server) -> tuple[World, str]:
    return world, live_server(create_app(world.app))


def _text(page: str) -> str:
    main = re.search(r"<main>(.*)</main>", page, re.DOTALL).group(1)
    main = re.sub(r"<style>.*?</style>", "", main, flags=re.DOTALL)
    return htmllib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", main))).strip()


def _self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)\s*=", page, re.IGNORECASE)
    assert "http" not in page


def _wait_for_mails(w: World, n: int) -> list:
    import time

    deadline = time.monotonic() + 10
    while len(w.mails()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and nothing more comes
    return w.mails()


def test_t8_page_get_shows_and_never_records_post_records_and_thanks(site, snapshot):
    w, base = site
    incident = w.incident(observations=NASTY)
    url = f"{base}/l/r/{w.token(incident)}"
    with httpx.Client() as http:
        page = http.get(url + "?score=4")
        assert page.status_code == 200 and http.head(url).status_code == 200
        assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        _self_contained(page.text)
        # The customer's language; the star link's score chosen; the observations escaped.
        assert '<div lang="fr"' in page.text
        assert re.search(r'value="4"\s+checked', page.text) and page.text.count("checked") == 1
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;contestée&#34;" in page.text
        assert "<b>" not in page.text
        assert _text(page.text) == snapshot(name="form fr")
        assert w.rating(incident) == (None, None, None) and w.alerts() == []  # mail scanners follow links

        done = http.post(url, data={"score": "4", "message": "Très bien </textarea><script>x()</script>"})
        assert done.status_code == 200
        _self_contained(done.text)
        assert _text(done.text) == snapshot(name="thanks fr")
        assert "&lt;/textarea&gt;&lt;script&gt;x()&lt;/script&gt;" in done.text
    assert w.rating(incident) == (4, "Très bien </textarea><script>x()</script>", NOW)
    # The team's email, after the answer, once.
    (mail,) = _wait_for_mails(w, 1)
    assert [a.addr_spec for a in mail["To"].addresses] == [TEAM]
    assert "4/5" in mail["Subject"] and "INC-0001" in mail["Subject"]

    with httpx.Client() as http:
        # Shown again: the rating as it is, still changeable while the request is open.
        again = http.get(url)
        assert "Votre note actuelle : 4 sur 5, donnée le 3 décembre 2026 à 10:15." in _text(again.text)


def test_t8_page_in_english_for_an_english_customer_and_its_refusals(site, snapshot):
    w, base = site
    incident = w.incident("C2", reference="INC-0002", observations="Wrong address on invoice FA-2.")
    url = f"{base}/l/r/{w.token(incident)}"
    with httpx.Client() as http:
        page = http.get(url + "?score=9")  # not a score: nothing chosen
        assert '<div lang="en"' in page.text and "checked" not in page.text
        assert _text(page.text) == snapshot(name="form en")
        # No score: the form again (400), what was typed kept, escaped.
        bad = http.post(url, data={"message": "Fine <i>really</i>"})
        assert bad.status_code == 400 and "Choose a score from 1 to 5." in _text(bad.text)
        assert ">Fine &lt;i&gt;really&lt;/i&gt;</textarea>" in bad.text
        long = http.post(url, data={"score": "3", "message": "x" * 2001})
        assert long.status_code == 400 and "Your message is too long" in _text(long.text)
        assert re.search(r'value="3"\s+checked', long.text)
        # A body over the bound is refused unread.
        huge = http.post(url, data={"score": "3", "message": "x" * 40_000})
        assert huge.status_code == 413
        assert w.rating(incident) == (None, None, None)

        assert http.post(url, data={"score": "5"}).status_code == 200
        w.close(incident)
        # Closed and rated: the page says the rating no longer changes, and a POST is refused.
        shown = http.get(url)
        assert shown.status_code == 200 and "<form" not in shown.text
        assert "This request is closed: your rating (5 out of 5, given on 3 December 2026 at 10:15)" in _text(shown.text)
        refused = http.post(url, data={"score": "1"})
        assert refused.status_code == 409 and _text(refused.text) == snapshot(name="locked en")
        assert w.rating(incident)[0] == 5

        # Forged: 404, in the company's language, saying nothing of why; expired: 410.
        forged = http.get(f"{base}/l/r/{w.token(incident)[:-3]}AAA")
        assert forged.status_code == 404 and _text(forged.text) == snapshot(name="invalid")
        w.at(OPENED + timedelta(days=31))
        expired = http.post(url, data={"score": "1"})
        assert expired.status_code == 410 and _text(expired.text) == snapshot(name="expired en")
        _self_contained(expired.text)
    assert w.rating(incident)[0] == 5


# --- the widget in any template: the send cycle's reminders --------------------------------------


def test_t8_reminders_carry_the_rating_link_of_the_customers_most_recent_ratable_incident(world: World, v1: Path):
    # The courtesy reminder's template with the widget tag.
    for name in ("courtesy.fr.txt", "courtesy.en.txt"):
        path = v1 / name
        path.write_text(path.read_text() + "\n@widgetvaluation@\n")
    from dunningops.reconcile.apply import apply_config
    from dunningops.spec import load_config

    apply_config(world.app.store, load_config(v1), now=NOW, actor="alice", git_commit=None)
    old = world.incident(reference="INC-0001", state="closed", rating=5)  # rated and closed: not any more
    recent = world.incident(reference="INC-0002", opened_at=OPENED + timedelta(hours=1))
    world.incident(reference="INC-0003", opened_at=OPENED - timedelta(days=3))  # open, but older

    report = run_send(world.app.store, at=paris(2026, 12, 4), transport_factory=world.factory)
    assert report.sent == 2
    by_customer = {m["X-Dunningops-Customer"]: m.get_body(("plain",)).get_content() for m in world.mails()}
    link = re.search(r"Donner votre avis : (\S+)", by_customer["C1"]).group(1)
    token = urlsplit(link).path.rsplit("/", 1)[1]
    assert signing.verify(world.key(), ratings.PURPOSE, token, NOW) == str(recent)
    assert old != recent
    # C2 has no incident: the widget prints nothing.
    assert "/l/r/" not in by_customer["C2"] and "Rate us" not in by_customer["C2"]


def test_t8_batch_finds_ratable_incidents_in_one_query_and_leaves_out_closed_ones_past_their_links_life(world: World):
    closed = world.incident(state="closed")  # closed on OPENED + 1 day, no rating
    open_c2 = world.incident("C2", reference="INC-0002")
    settings = world.settings()
    queries: list[str] = []
    listen = lambda conn, cursor, statement, *a: queries.append(statement) if "FROM incidents" in statement else None
    with world.app.session() as s:
        ids = dict(s.execute(select(CustomerRow.external_id, CustomerRow.id)).all())
        event.listen(world.app.store.engine, "before_cursor_execute", listen)
        try:
            batch = compose.Batch.load(s, [ids["C1"], ids["C2"]], NOW.date())
        finally:
            event.remove(world.app.store.engine, "before_cursor_execute", listen)
    assert len(queries) == 1  # one set-based query for the batch's customers
    link = batch.rating_url(settings, ids["C1"], NOW.date())
    assert signing.verify(world.key(), ratings.PURPOSE, link.rsplit("/", 1)[1], NOW) == str(closed)
    # Signed from the end of the sending day (company time): the dry run and the real run sign alike.
    assert link == ratings.rating_url(settings, world.key(), closed, datetime(2026, 12, 3, 23, tzinfo=UTC))
    # 30 days after the closing, its closure email's link is dead: no widget in a reminder either.
    late = (OPENED + timedelta(days=32)).date()
    assert batch.rating_url(settings, ids["C1"], late) is None
    c2 = batch.rating_url(settings, ids["C2"], late)
    assert signing.verify(world.key(), ratings.PURPOSE, c2.rsplit("/", 1)[1], NOW) == str(open_c2)  # open: always
