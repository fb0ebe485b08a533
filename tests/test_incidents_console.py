"""T8 in the team console, over real HTTP (uvicorn on loopback, httpx) on SQLite and PostgreSQL, and in a
real browser (chromium): the incidents page (state and rating filters, paged), an incident's page, opening
one from a customer's page and closing it (the signed-in member is the actor, the change is recorded with
them), sending a notification it is owed, and the customers page's rating filter."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from browser_helpers import DESKTOP, chromium
from console_helpers import NOW, PASSWORDS, make_world, post_form, signed_in
from dunningops.incidents.incidents import open_incident
from dunningops.store.schema import IncidentRow, InvoiceRow, MessageRow
from test_incidents import configure
from test_web_console_browser import _shot


@pytest.fixture
def world(database_url: str, v1: Path, tmp_path: Path):
    w = make_world(database_url, configure(v1), tmp_path)
    yield w
    w.app.close()


@pytest.fixture
def base(world, live_server) -> str:
    return live_server(world.web())


def _incident(world, reference: str) -> dict:
    (row,) = world.rows(IncidentRow, IncidentRow.reference == reference)
    return row


def _open(world, customer: str, invoice: str | None = None, **kwargs) -> dict:
    kwargs.setdefault("notify", False)
    return open_incident(world.app.store, customer=customer, invoice=invoice, observations=kwargs.pop("observations", "x"),
                         actor="bob", at=NOW, **kwargs)


def test_t8_open_an_incident_from_the_customer_page_and_close_it(base, world):
    with closing(signed_in(base)) as http:
        page = http.get("/customers/C1")
        assert page.status_code == 200 and "Open an incident" in page.text and "No incident." in page.text
        answer = post_form(http, "/customers/C1", "/incidents", {
            "customer": "C1", "kind": "dispute", "invoice": "I1", "notify": "default",
            "observations": "Facture contestée : <b>remise</b> oubliée.",
        })
        assert answer.status_code == 303 and answer.headers["location"] == "/incidents/INC-0001?done=opened&notice=sent"
        shown = http.get(answer.headers["location"])
        assert shown.status_code == 200
        assert "The incident is opened. The customer was notified." in shown.text
        assert "Facture contestée : &lt;b&gt;remise&lt;/b&gt; oubliée." in shown.text  # autoescaped
        assert "its dunning waits until the incident is closed" in shown.text and " by Alice Martin" in shown.text
        assert "Nous avons bien noté votre demande (INC-0001)" in shown.text
        customer = http.get("/customers/C1").text
        assert 'href="/incidents/INC-0001"' in customer and "dispute: until the incident INC-0001 is closed" in customer
        assert "until the incident INC-0001 is closed" in customer and "2199" not in customer  # the timeline's pause
        closed = post_form(http, "/incidents/INC-0001", "/incidents/INC-0001",
                           {"action": "close", "note": "Avoir émis.", "notify": "no"})
        assert closed.status_code == 303 and closed.headers["location"] == "/incidents/INC-0001?done=closed&notice=off"
        after = http.get(closed.headers["location"]).text
        assert "The incident is closed. No notification was sent" in after and "Avoir émis." in after
        assert "Close the incident" not in after
    row = _incident(world, "INC-0001")
    assert (row["state"], row["origin"], row["opened_by"], row["closed_by"], row["notify_closed"]) == (
        "closed", "console", "alice", "alice", False)
    (invoice,) = world.rows(InvoiceRow, InvoiceRow.external_id == "I1")
    assert invoice["paused"] is False
    assert [(a["member_id"], a["action"], a["target"]) for a in world.activity() if a["action"].startswith("incident")] == [
        ("alice", "incident.open", "incident:INC-0001"), ("alice", "incident.close", "incident:INC-0001")]
    (sent,) = world.rows(MessageRow, MessageRow.kind == "notification")
    assert sent["to_addresses"] == ["paul@martin.fr"] and sent["id"] == row["opened_message_id"]


def test_t8_the_incidents_page_filters_by_state_and_rating_and_pages(base, world):
    for customer in ("C1", "C2", "C3"):
        _open(world, customer, kind="other", observations=f"About {customer}")
    _open(world, "C3", kind="other", observations="Closed one")
    with world.app.store.session() as s:
        s.execute(update(IncidentRow).where(IncidentRow.reference == "INC-0002")
                  .values(rating=5, rating_message="Parfait, merci !", rated_at=datetime(2026, 12, 14, 9, 5, tzinfo=UTC)))
        s.execute(update(IncidentRow).where(IncidentRow.reference == "INC-0004").values(state="closed", closed_at=NOW))
    with closing(signed_in(base)) as http:
        page = http.get("/incidents").text
        assert all(f">INC-000{n}<" in page for n in (1, 2, 3)) and ">INC-0004<" not in page
        assert "1–3 of 3 incidents" in page
        everything = http.get("/incidents", params={"state": "all"}).text
        assert ">INC-0004<" in everything and "1–4 of 4 incidents" in everything
        rated = http.get("/incidents", params={"state": "all", "rating": "rated"}).text
        assert ">INC-0002<" in rated and ">INC-0001<" not in rated
        assert "5/5" in rated and "Parfait, merci !" in rated and "2026-12-14 10:05" in rated  # Paris time
        unrated = http.get("/incidents", params={"rating": "unrated"}).text
        assert ">INC-0002<" not in unrated and ">INC-0001<" in unrated
        paged = http.get("/incidents", params={"state": "all", "limit": 2}).text
        assert "1–2 of 4 incidents" in paged and 'rel="next"' in paged
        assert http.get("/incidents", params={"rating": "lovely"}).status_code == 422
        one = http.get("/incidents/INC-0002").text
        assert "5/5" in one and "Parfait, merci !" in one and "The customer wrote" in one
        assert http.get("/incidents/INC-9999").status_code == 404


def test_t8_the_customers_page_filters_by_rating_status(base, world):
    _open(world, "C1", kind="other")
    _open(world, "C2", kind="other")
    with world.app.store.session() as s:
        s.execute(update(IncidentRow).where(IncidentRow.reference == "INC-0001").values(rating=2, rated_at=NOW))
    with closing(signed_in(base)) as http:
        form = http.get("/customers").text
        assert '<select name="rating">' in form
        for status, shown in (("rated", ["C1"]), ("unrated", ["C2"]), ("none", ["C3"])):
            page = http.get("/customers", params={"rating": status}).text
            assert [c for c in ("C1", "C2", "C3") if f'href="/customers/{c}"' in page] == shown, status
        assert http.get("/customers", params={"rating": "maybe"}).status_code == 422


def test_t8_a_notification_owed_is_sent_from_the_incident_page_once(base, world):
    opened = open_incident(world.app.store, customer="C1", kind="other", observations="x", actor="bob", at=NOW,
                           transport_factory=None)
    assert opened["notification"]["status"] == "not_sent"
    with closing(signed_in(base)) as http:
        page = http.get("/incidents/INC-0001").text
        assert "The opening notification is not sent yet to paul@martin.fr." in page and "Send it now" in page
        sent = post_form(http, "/incidents/INC-0001", "/incidents/INC-0001", {"action": "notify"})
        assert sent.headers["location"] == "/incidents/INC-0001?done=notified&notice=sent"
        after = http.get(sent.headers["location"]).text
        assert "Send it now" not in after and "The customer was notified." in after
        again = post_form(http, "/incidents/INC-0001", "/incidents/INC-0001", {"action": "notify"})
        assert again.headers["location"] == "/incidents/INC-0001?done=notified"
    assert len(world.rows(MessageRow, MessageRow.kind == "notification")) == 1


def test_t8_incident_forms_need_the_csrf_token_and_say_what_is_wrong(base, world):
    with closing(signed_in(base)) as http:
        forged = http.post("/incidents", data={"customer": "C1", "kind": "other", "observations": "x"})
        assert forged.status_code == 403
        empty = post_form(http, "/customers/C1", "/incidents", {"customer": "C1", "kind": "other", "observations": " "})
        assert empty.status_code == 422 and "observations is missing" in empty.text
        other = post_form(http, "/customers/C1", "/incidents",
                          {"customer": "C1", "kind": "dispute", "invoice": "I2", "observations": "x"})
        assert other.status_code == 422 and "Invoice I2 is customer C2&#39;s, not C1&#39;s" in other.text
    assert world.rows(IncidentRow) == []
    _open(world, "C1", kind="other")
    with closing(signed_in(base)) as http:
        assert post_form(http, "/incidents/INC-0001", "/incidents/INC-0001", {"action": "close"}).status_code == 303
        twice = post_form(http, "/incidents", "/incidents/INC-0001", {"action": "close"})
        assert twice.status_code == 409 and "closed already" in twice.text


def test_t8_open_and_close_an_incident_in_a_real_browser(sqlite_url: str, v1: Path, tmp_path: Path, live_server):
    world = make_world(sqlite_url, configure(v1), tmp_path)
    try:
        base = live_server(world.web())
        with chromium() as browser:
            page = browser.new_context(viewport=DESKTOP, java_script_enabled=False).new_page()
            page.goto(base + "/customers/C1")
            page.fill("#member", "alice")
            page.fill("#password", PASSWORDS["alice"])
            page.click("button:has-text('Sign in')")
            page.select_option("select[name=invoice]", "I1")
            page.fill("#observations", "Le client conteste le montant.")
            page.click("button:has-text('Open the incident')")
            assert page.url.startswith(base + "/incidents/INC-0001")
            assert page.is_visible("text=The incident is opened.")
            _shot(page, "incident-desktop")
            page.fill("#note", "Réglé par avoir.")
            page.click("button:has-text('Close')")
            assert page.is_visible("text=The incident is closed.")
            page.goto(base + "/incidents?state=all")
            assert page.is_visible("text=INC-0001")
            _shot(page, "incidents-desktop")
        row = _incident(world, "INC-0001")
        assert (row["state"], row["opened_by"], row["closing_note"]) == ("closed", "alice", "Réglé par avoir.")
    finally:
        world.app.close()

