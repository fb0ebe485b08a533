"""T8: a rating link taken from a real email (sent to the real local SMTP server) followed in a real
browser (Debian's chromium driven by Playwright, JavaScript off: the page needs none) to the daemon's
HTTP server, on SQLite and PostgreSQL: click a star, type a message, submit, see the thanks; the
store holds it, the team's email arrives once; a re-rating while open changes it; once closed, no more.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select, update

from browser_helpers import DESKTOP, PHONE, SHOTS, chromium
from cycle_helpers import paris, setup_store
from daemon_helpers import set_settings
from dunningops.app import App
from dunningops.dunning.runconfig import RunConfig
from dunningops.incidents import ratings
from dunningops.notify import deliver
from dunningops.store.meta import signing_key
from dunningops.store.schema import CustomerRow
from dunningops.store.schema_notices import IncidentRow
from dunningops.web import create_app
from outgoing_helpers import smtp_factory
from web_fixtures import free_port, serve

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\n",
    invoices="I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\n",
)
OPENED = paris(2026, 12, 1, 9)
TEAM = "team@acme.fr"
TEMPLATE = """\
  - id: incident-opened
    name: Incident ouvert
    design: html
    locales:
      fr: {subject: "Votre demande {{ incident.reference }}", body: incident-opened.fr.html}
"""
BODY = """\
<p>Bonjour {{ contact.name }},</p>
<p>Nous avons bien enregistré votre demande {{ incident.reference }} :</p>
<blockquote>@Observations@</blockquote>
@widgetvaluation@
<p>@SENDERNAME@</p>
"""


@pytest.fixture(scope="module")
def browser():
    # No skip: without chromium this fails.
    with chromium() as launched:
        yield launched


@pytest.fixture
def site(database_url: str, v1: Path, tmp_path: Path, smtp_server):
    port = free_port()
    # The links in the emails name the daemon's public address: the server the browser reaches.
    set_settings(
        v1,
        daemon=f"{{public_url: 'http://127.0.0.1:{port}'}}",
        notifications=f"{{incident_opened: {{template: incident-opened, from: alias.billing}}, rating: {{to: [{TEAM}]}}}}",
    )
    (v1 / "plans.yaml").write_text((v1 / "plans.yaml").read_text() + TEMPLATE)
    (v1 / "incident-opened.fr.html").write_text(BODY)
    clock = [OPENED]
    transport = smtp_factory(smtp_server.host, smtp_server.port)
    app = App(v1, database_url, env={}, clock=lambda: clock[0], transport_factory=transport)
    setup_store(app.store, v1, tmp_path, verify=("billing",), **LEDGER)
    with serve(create_app(app), port=port) as base:
        yield app, base, clock
    app.store.dispose()


def _incident(app: App) -> int:
    with app.session() as s:
        customer_id = s.scalar(select(CustomerRow.id).where(CustomerRow.external_id == "C1"))
        row = IncidentRow(
            reference="INC-0007", customer_id=customer_id, kind="dispute", state="open", origin="cli", opened_at=OPENED,
            observations="La facture FA-1 compte deux fois la livraison <du 12/11> & celle du 14.",
        )  # fmt: skip
        s.add(row)
        s.flush()
        return row.id


def _send_opened_notification(app: App, incident_id: int) -> None:
    """The incident's notification with the widget, through the shared way out to the real SMTP server."""
    with app.session() as s:
        config = RunConfig.from_store(s)
        url = ratings.rating_url(config.settings, signing_key(s), incident_id, OPENED)
        notice = deliver.Notice(
            customer_id=s.scalar(select(IncidentRow.customer_id).where(IncidentRow.id == incident_id)),
            extra={
                "incident": {
                    "reference": "INC-0007",
                    "observations": "La facture FA-1 compte deux fois la livraison <du 12/11> & celle du 14.",
                    "state": "open",
                    "opened_on": OPENED.date(),
                },
                "rating_url": url,
            },
        )
        (ready,) = deliver.prepare(s, config, [notice], template="incident-opened", sender_ref="alias.billing", at=OPENED)
    assert isinstance(ready, deliver.Ready), ready
    (outcome,) = deliver.send(app.store, config, [ready], template="incident-opened", at=OPENED, transport_factory=app.transport)
    assert outcome.status == "sent"


def _rating(app: App, incident_id: int) -> tuple:
    with app.session() as s:
        return tuple(
            s.execute(
                select(IncidentRow.rating, IncidentRow.rating_message, IncidentRow.rated_at).where(IncidentRow.id == incident_id)
            ).one()
        )


def _to(smtp_server, address: str) -> list:
    return [m for m in smtp_server.messages() if address in m["To"]]


def _wait_for(smtp_server, address: str, n: int) -> list:
    deadline = time.monotonic() + 15
    while len(_to(smtp_server, address)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # and nothing more comes
    return _to(smtp_server, address)


def _page(browser: Browser, base: str, viewport: dict) -> Page:
    context = browser.new_context(viewport=viewport, java_script_enabled=False)
    page = context.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base) else elsewhere.append(r.url))
    page.elsewhere = elsewhere  # type: ignore[attr-defined]
    return page


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_t8_rating_link_from_a_real_email_followed_in_the_browser(browser, site, smtp_server):
    app, base, clock = site
    incident = _incident(app)
    _send_opened_notification(app, incident)
    (notification,) = _to(smtp_server, "paul@martin.fr")
    html = notification.get_body(("html",)).get_content()
    assert html.count(f"{base}/l/r/") == 5  # five stars, each a link

    # The email as the customer's mail program shows it; a click on the fourth star.
    page = _page(browser, base, DESKTOP)
    page.set_content(html)
    page.click("a[title^='4 ']")
    page.wait_for_load_state()
    assert page.url.startswith(f"{base}/l/r/") and page.url.endswith("?score=4")
    assert page.is_checked("#score-4") and not page.is_checked("#score-5")
    assert "<du 12/11> & celle du 14." in page.locator("blockquote.observations").inner_text()
    assert _rating(app, incident) == (None, None, None)  # following the link records nothing
    _shot(page, "rating-form-desktop")
    clock[0] = OPENED + timedelta(days=1, hours=2)
    page.fill("#message", "Merci, c'est réglé.\nRéponse rapide <3")
    page.click("button:has-text('Envoyer mon avis')")
    assert page.locator("h1").inner_text() == "Merci pour votre avis"
    assert "Votre note de 4 sur 5 pour la demande INC-0007 est enregistrée." in page.locator("main").inner_text()
    _shot(page, "rating-thanks-desktop")
    assert _rating(app, incident) == (4, "Merci, c'est réglé.\nRéponse rapide <3", clock[0])
    (told,) = _wait_for(smtp_server, TEAM, 1)
    assert "Boulangerie Martin SARL rated request INC-0007 4/5" in told["Subject"]
    body = told.get_body(("plain",)).get_content()
    assert "Réponse rapide <3" in body and "rated at: 2026-12-02 11:30 (Europe/Paris)" in body

    # While the request is open, the same link changes the rating: the last one counts, the team hears again.
    first_link = page.url.split("?")[0]
    clock[0] += timedelta(hours=1)
    page.goto(first_link)
    assert "Votre note actuelle : 4 sur 5" in page.locator("main").inner_text()
    page.check("#score-2")
    page.fill("#message", "")
    page.click("button:has-text('Envoyer mon avis')")
    assert page.locator("h1").inner_text() == "Merci pour votre avis"
    assert _rating(app, incident) == (2, None, clock[0])
    subjects = [m["Subject"] for m in _wait_for(smtp_server, TEAM, 2)]
    assert subjects[1].endswith("Boulangerie Martin SARL changed their rating of request INC-0007 from 4/5 to 2/5")

    # Closed: the page says the rating stays as it is; a POST is refused and changes nothing.
    with app.session() as s:
        s.execute(update(IncidentRow).where(IncidentRow.id == incident).values(state="closed", closed_at=clock[0]))
    clock[0] += timedelta(hours=1)
    page.goto(first_link)
    assert page.locator("form").count() == 0
    assert "Cette demande est close : votre note (2 sur 5" in page.locator("main").inner_text()
    _shot(page, "rating-closed-desktop")
    assert httpx.post(first_link, data={"score": "5"}).status_code == 409
    assert _rating(app, incident)[0] == 2
    assert page.elsewhere == []  # type: ignore[attr-defined]  # nothing loaded from elsewhere

    # Each email once: one notification to the customer, one team email per rating.
    assert len(_to(smtp_server, "paul@martin.fr")) == 1
    assert len(_wait_for(smtp_server, TEAM, 2)) == 2


def test_t8_the_rating_page_fits_a_phone(browser, site):
    app, base, _ = site
    incident = _incident(app)
    with app.session() as s:
        link = ratings.rating_url(RunConfig.from_store(s).settings, signing_key(s), incident, OPENED)
    assert link.startswith(base)
    context = browser.new_context(viewport=PHONE, java_script_enabled=True, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(link + "?score=5")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    _shot(page, "rating-form-phone")
