"""The console in a real browser: Debian's chromium driven by Playwright (nothing downloaded), on SQLite.

Sign in, open each main page, act by clicking (with JavaScript off: the pages need none), and keep
screenshots of the main pages, desktop and phone, in build/artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from browser_helpers import DESKTOP, PHONE, SHOTS, chromium
from console_helpers import PASSWORDS, make_world
from dunningops.store.schema import InboxMessageRow, MessageRow, TodoRow
from outgoing_helpers import smtp_factory


@pytest.fixture(scope="module")
def browser():
    # No skip: without chromium this fails.
    with chromium() as launched:
        yield launched


@pytest.fixture
def world(sqlite_url: str, v1: Path, tmp_path: Path, smtp_server):
    w = make_world(sqlite_url, v1, tmp_path)
    w.transport = smtp_factory(smtp_server.host, smtp_server.port)
    yield w
    w.app.close()


@pytest.fixture
def base(world, live_server) -> str:
    return live_server(world.web())


def _page(browser: Browser, base: str, viewport: dict, *, javascript: bool = True, mobile: bool = False) -> Page:
    context = browser.new_context(viewport=viewport, java_script_enabled=javascript, is_mobile=mobile, has_touch=mobile)
    page = context.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base) else elsewhere.append(r.url))
    page.elsewhere = elsewhere  # type: ignore[attr-defined]
    return page


def _sign_in(page: Page, base: str, member: str = "alice", start: str = "/todos") -> None:
    page.goto(base + start)
    assert page.url.startswith(base + "/signin?next=")
    page.fill("#member", member)
    page.fill("#password", PASSWORDS[member])
    page.click("button:has-text('Sign in')")
    assert page.url == base + start, page.url


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _main_pages(world) -> list[tuple[str, str]]:
    (reply,) = world.rows(InboxMessageRow, InboxMessageRow.kind == "reply")
    return [
        ("home", "/"),
        ("todos", "/todos"),
        ("todo-email", f"/todos/{world.todo['C3']}"),
        ("todo-reply", f"/todos/{world.todo['reply']}"),
        ("inbox", "/inbox?status=all"),
        ("inbox-message", f"/inbox/{reply['id']}"),
        ("customers", "/customers"),
        ("customer", "/customers/C1"),
        ("contacts-invalid", "/contacts/invalid"),
        ("alerts", "/alerts"),
        ("applies", "/applies"),
        ("apply", "/applies/1"),
    ]


def test_sign_in_open_each_page_and_act_by_clicking_without_javascript(browser, world, base, smtp_server):
    page = _page(browser, base, DESKTOP, javascript=False)
    page.goto(base + "/")
    _shot(page, "signin-desktop")
    _sign_in(page, base)
    for name, path in _main_pages(world):
        answer = page.goto(base + path)
        assert answer is not None and answer.status == 200, path
        assert page.locator("h1").count() == 1 and "Traceback" not in page.content()
        _shot(page, f"{name}-desktop")
    # Mark the bounce to-do done: one click, and the page says so.
    page.goto(base + f"/todos/{world.todo['bounce']}")
    page.click("button:has-text('Mark done')")
    assert page.locator(".flash").inner_text() == "The to-do is marked done."
    assert world.rows(TodoRow, TodoRow.id == world.todo["bounce"])[0]["closed_by"] == "alice"
    # A6: send C3's prepared email from the billing alias instead of the preselected account manager.
    page.goto(base + f"/todos/{world.todo['C3']}")
    assert page.locator("#sender").input_value() == "member.bob"
    page.select_option("#sender", "alias.billing")
    page.click("button:has-text('Send')")
    assert page.locator(".flash").inner_text() == "The email has been sent."
    _shot(page, "todo-sent-desktop")
    (sent,) = smtp_server.messages()
    assert "billing@acme.fr" in sent["From"]
    assert world.rows(MessageRow, MessageRow.todo_id == world.todo["C3"])[0]["performed_by"] == "alice"
    # R8: link Paul's reply to C3 by typing its id.
    (reply,) = world.rows(InboxMessageRow, InboxMessageRow.kind == "reply")
    page.goto(base + f"/inbox/{reply['id']}")
    page.fill("input[name=customer]", "C3")
    page.click("button:has-text('Link')")
    assert page.locator(".flash").inner_text() == "The message is linked to its new customer."
    assert "C3" in page.locator("dl.facts").inner_text()
    assert [a["action"] for a in world.activity()] == ["console.signin", "todo.done", "todo.send", "inbox.relink"]
    # Sign out: back to the sign-in form, and the pages are closed again.
    page.click("button:has-text('Sign out')")
    assert page.url.startswith(base + "/signin") and page.locator(".flash").inner_text() == "You are signed out."
    page.goto(base + "/todos")
    assert page.url.startswith(base + "/signin?next=")
    assert page.elsewhere == []  # type: ignore[attr-defined]  # nothing from another site: no CDN, no web font


def test_every_main_page_fits_a_phone(browser, world, base):
    page = _page(browser, base, PHONE, mobile=True)
    page.goto(base + "/")
    _shot(page, "signin-phone")
    _sign_in(page, base, "bob", "/")
    for name, path in _main_pages(world):
        page.goto(base + path)
        # Nothing wider than the screen: tables stack into cards, the menu scrolls on its own.
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, (path, overflow)
        _shot(page, f"{name}-phone")
    assert page.elsewhere == []  # type: ignore[attr-defined]
