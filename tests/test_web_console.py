"""The team console over real HTTP (uvicorn on loopback, httpx), on SQLite and PostgreSQL: who gets in
(passwords, sessions, their expiry, the trusted proxy's header), CSRF on every form, each action
through the engine and recorded with its member, errors as pages, and `dunningops member`."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from console_helpers import (
    NOW,
    PASSWORDS,
    StatementCounter,
    client,
    csrf_of,
    fill_big,
    make_world,
    post_form,
    sign_in,
    signed_in,
)
from dunningops.store.schema import (
    AlertRow,
    ConsoleSessionRow,
    ContactRow,
    CredentialRow,
    CustomerRow,
    InboxMessageRow,
    MessageRow,
    PauseRow,
    TodoRow,
)
from outgoing_helpers import smtp_factory


@pytest.fixture
def world(database_url: str, v1: Path, tmp_path: Path):
    w = make_world(database_url, v1, tmp_path)
    yield w
    w.app.close()


@pytest.fixture
def base(world, live_server) -> str:
    return live_server(world.web())


def _configured(v1: Path, lines: str) -> Path:
    """v1 with more settings (indented under ``settings:``)."""
    path = v1 / "dunningops.yaml"
    text = path.read_text()
    path.write_text(
        text.replace("  portal: {notifications_alias: billing}\n", "  portal: {notifications_alias: billing}\n" + lines)
    )
    return v1


def _todo(world, key: str) -> dict:
    (row,) = world.rows(TodoRow, TodoRow.id == world.todo[key])
    return row


# --- who gets in --------------------------------------------------------------------------------


def test_an_unauthenticated_page_sends_to_signin_with_the_page_to_come_back_to(base):
    with client(base) as http:
        for path in ("/", "/todos?kind=email", "/customers/C1", "/applies/1"):
            answer = http.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/signin?next=" + quote(path, safe="")
        # A form posted without a session changes nothing and goes to sign in too.
        assert http.post("/todos/1/done", data={"csrf": "x"}).status_code == 303


def test_signin_makes_a_session_whose_cookie_the_store_keeps_only_hashed(base, world):
    with client(base) as http:
        answer = sign_in(http, "alice", next_="/todos?kind=email")
        assert answer.status_code == 303 and answer.headers["location"] == "/todos?kind=email"
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("dunningops_session="))
        token = cookie.split(";")[0].split("=", 1)[1]
        flags = cookie.lower()
        assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags and "path=/" in flags
        assert f"max-age={480 * 60}" in flags
        (row,) = world.rows(ConsoleSessionRow)
        assert row["id"] == hashlib.sha256(token.encode()).hexdigest() and row["member_id"] == "alice"
        assert row["expires_at"] == NOW + timedelta(minutes=480)
        page = http.get("/todos")
        assert page.status_code == 200 and "Alice Martin" in page.text
    (hashed,) = world.rows(CredentialRow, CredentialRow.member_id == "alice")
    assert hashed["password_hash"].startswith("$argon2id$") and PASSWORDS["alice"] not in hashed["password_hash"]
    assert [(a["member_id"], a["via"], a["action"]) for a in world.activity()] == [("alice", "console", "console.signin")]


def test_signin_by_email_in_any_case(base):
    with client(base) as http:
        assert sign_in(http, "Bob@ACME.fr", PASSWORDS["bob"]).status_code == 303
        assert "Bob Durand" in http.get("/").text


def test_a_wrong_password_is_refused_and_a_few_a_minute_throttle_the_member_and_the_address(base, world):
    with client(base) as http:
        refused = sign_in(http, "alice", "not alice's password at all")
        assert refused.status_code == 401 and "do not match" in refused.text
        assert "dunningops_session" not in refused.headers.get("set-cookie", "")
        for _ in range(4):
            assert sign_in(http, "alice", "still not the password").status_code == 401
        throttled = sign_in(http, "alice")  # the right password, but too soon
        assert throttled.status_code == 429 and "wait a minute" in throttled.text
        world.clock.advance(seconds=61)
        assert sign_in(http, "alice").status_code == 303
    with client(base) as http:
        # From one address, guessing several members' passwords is slowed down the same way.
        for name in ("nobody", "bob", "chloe", "mallory", "eve"):
            assert sign_in(http, name, "a guess of a password").status_code == 401
        assert sign_in(http, "bob").status_code == 429
        world.clock.advance(seconds=61)
        assert sign_in(http, "bob").status_code == 303
    assert sorted(r["member_id"] for r in world.rows(ConsoleSessionRow)) == ["alice", "bob"]


def test_the_signin_form_needs_its_own_token(base, world):
    with client(base) as http:
        http.get("/signin")
        answer = http.post("/signin", data={"member": "alice", "password": PASSWORDS["alice"], "csrf": "forged"})
        assert answer.status_code == 403 and "expired" in answer.text
    with client(base) as other:  # a token without the cookie it was made for
        token = csrf_of(client(base).get("/signin").text)
        answer = other.post("/signin", data={"member": "alice", "password": PASSWORDS["alice"], "csrf": token})
        assert answer.status_code == 403
    assert world.rows(ConsoleSessionRow) == []


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_after_signin_only_a_local_page(base, target):
    with client(base) as http:
        answer = sign_in(http, "alice", next_=target)
        assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_a_session_ends_after_session_minutes(base, world):
    http = signed_in(base)
    world.clock.advance(minutes=479)
    assert http.get("/todos").status_code == 200
    world.clock.advance(minutes=1)
    assert http.get("/todos").status_code == 303


def test_signout_deletes_the_session_and_its_cookie_no_longer_works(base, world):
    http = signed_in(base)
    cookie = http.cookies["dunningops_session"]
    answer = post_form(http, "/", "/signout")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    assert world.rows(ConsoleSessionRow) == []
    with client(base, cookies={"dunningops_session": cookie}) as replay:
        assert replay.get("/").status_code == 303
    assert [a["action"] for a in world.activity()] == ["console.signin", "console.signout"]


def test_a_member_removed_from_the_config_is_out_at_once(base, world, v1):
    from console_helpers import _config
    from dunningops.web.console.credentials import set_password

    with world.app.store.session() as s:
        set_password(s, _config(world.app), "chloe", "chloé's long passphrase", now=NOW)
    chloe = client(base)
    assert sign_in(chloe, "chloe", "chloé's long passphrase").status_code == 303
    assert chloe.get("/").status_code == 200
    config = v1 / "dunningops.yaml"
    config.write_text(config.read_text().replace("  - {id: chloe, email: chloe@acme.fr, name: Chloé Petit, role: admin}\n", ""))
    world.apply(v1)
    assert chloe.get("/").status_code == 303
    assert sign_in(client(base), "chloe", "chloé's long passphrase").status_code == 401


def test_setting_a_password_again_ends_the_members_sessions(base, world):
    from console_helpers import _config
    from dunningops.web.console.credentials import set_password

    http = signed_in(base, "bob")
    with world.app.store.session() as s:
        result = set_password(s, _config(world.app), "bob", "a brand new passphrase", now=NOW)
    assert result["sessions_ended"] == 1
    assert http.get("/").status_code == 303


# --- the trusted reverse proxy's header ---------------------------------------------------------


def test_the_trusted_header_signs_in_from_a_trusted_proxy_only(base, world, v1):
    _configured(v1, "  console: {trusted_user_header: X-Remote-User, trusted_proxies: [10.1.2.3, 192.168.0.0/16]}\n")
    world.apply(v1)
    with client(base) as http:  # the test connects from 127.0.0.1: not a trusted proxy, the header is ignored
        assert http.get("/todos", headers={"X-Remote-User": "bob"}).status_code == 303
    config = v1 / "dunningops.yaml"
    config.write_text(config.read_text().replace("[10.1.2.3, 192.168.0.0/16]", "[127.0.0.1]"))
    world.apply(v1)
    with client(base, headers={"X-Remote-User": "bob@acme.fr"}) as proxied:
        page = proxied.get("/todos")
        assert page.status_code == 200 and "Bob Durand" in page.text and "Sign out" not in page.text
        # Its forms still carry a token: a page elsewhere cannot post through the proxy on bob's behalf.
        bounce = world.todo["bounce"]
        assert proxied.post(f"/todos/{bounce}/done", data={"csrf": "forged"}).status_code == 403
        assert post_form(proxied, f"/todos/{bounce}", f"/todos/{bounce}/done").status_code == 303
    assert _todo(world, "bounce")["closed_by"] == "bob"
    assert [(a["member_id"], a["action"]) for a in world.activity()] == [("bob", "todo.done")]
    with client(base, headers={"X-Remote-User": "mallory"}) as stranger:
        assert stranger.get("/todos").status_code == 303
    assert world.rows(ConsoleSessionRow) == []


def test_the_cookie_is_secure_when_the_console_is_served_over_https(base, world, v1):
    _configured(v1, "  daemon: {public_url: 'https://dunning.acme.fr'}\n")
    world.apply(v1)
    with client(base) as http:
        form = http.get("/signin")
        (signin_cookie,) = form.headers.get_list("set-cookie")
        assert "; secure" in signin_cookie.lower() and "httponly" in signin_cookie.lower()
        # The client keeps a Secure cookie for https: over the test's plain http it is sent by hand.
        value = signin_cookie.split(";")[0]
        answer = http.post(
            "/signin",
            data={"member": "alice", "password": PASSWORDS["alice"], "csrf": csrf_of(form.text)},
            headers={"Cookie": value},
        )
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("dunningops_session="))
        assert "; secure" in cookie.lower() and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()


# --- CSRF -----------------------------------------------------------------------------------------


def test_every_form_needs_the_sessions_csrf_token(base, world):
    alice, bob = signed_in(base, "alice"), signed_in(base, "bob")
    todo = world.todo["bounce"]
    bobs_token = csrf_of(bob.get(f"/todos/{todo}").text)
    for data in ({}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": bobs_token}):
        refused = alice.post(f"/todos/{todo}/done", data=data)
        assert refused.status_code == 403 and "did not come from this console" in refused.text
    for action, data in (
        ("/inbox/1/relink", {"customer": "C3"}),
        ("/alerts/ack-all", {}),
        ("/customers/C1", {"action": "resume"}),
    ):
        assert alice.post(action, data=data).status_code == 403
    assert _todo(world, "bounce")["status"] == "open"
    assert [a["action"] for a in world.activity()] == ["console.signin", "console.signin"]


# --- actions --------------------------------------------------------------------------------------


def test_e1_done_and_dismiss_close_the_todo_recorded_with_the_member(base, world):
    http = signed_in(base, "bob")
    bounce, c2 = world.todo["bounce"], world.todo["C2"]
    done = post_form(http, f"/todos/{bounce}", f"/todos/{bounce}/done")
    assert done.status_code == 303 and done.headers["location"] == f"/todos/{bounce}?flash=done"
    assert "The to-do is marked done." in http.get(done.headers["location"]).text
    assert post_form(http, f"/todos/{c2}", f"/todos/{c2}/dismiss").status_code == 303
    assert (_todo(world, "bounce")["status"], _todo(world, "bounce")["closed_by"]) == ("done", "bob")
    assert (_todo(world, "C2")["status"], _todo(world, "C2")["closed_by"]) == ("dismissed", "bob")
    acts = [(a["member_id"], a["via"], a["action"], a["target"]) for a in world.activity()[1:]]
    assert acts == [("bob", "console", "todo.done", f"todo:{bounce}"), ("bob", "console", "todo.dismiss", f"todo:{c2}")]
    # Closed stays closed: a second click is a conflict page, and nothing more is recorded.
    token = csrf_of(http.get("/").text)
    again = http.post(f"/todos/{bounce}/done", data={"csrf": token})
    assert again.status_code == 409 and "already done" in again.text and "Traceback" not in again.text
    assert len(world.activity()) == 3


def test_a6_send_the_prepared_email_from_another_allowed_sender_at_most_once(base, world, smtp_server):
    world.transport = smtp_factory(smtp_server.host, smtp_server.port)
    http = signed_in(base, "alice")
    todo = world.todo["C3"]
    page = http.get(f"/todos/{todo}").text
    # A6: the step's sender (the account manager, bob) is preselected; aliases and members are offered.
    assert (
        '<option value="member.bob" selected>' in page and 'value="alias.billing"' in page and 'value="account_manager"' in page
    )
    sent = http.post(f"/todos/{todo}/send", data={"csrf": csrf_of(page), "sender": "alias.billing"})
    assert sent.status_code == 303 and sent.headers["location"] == f"/todos/{todo}?flash=sent"
    (received,) = smtp_server.messages()
    assert "billing@acme.fr" in received["From"] and received["To"] == "jean@cafeduport.fr"
    assert received["Subject"] == "Facture en retard"
    (row,) = world.rows(MessageRow, MessageRow.todo_id == todo)
    assert (row["kind"], row["status"], row["sender_ref"], row["performed_by"]) == ("manual", "sent", "alias.billing", "alice")
    assert (_todo(world, "C3")["status"], _todo(world, "C3")["closed_by"]) == ("sent", "alice")
    (act,) = [a for a in world.activity() if a["action"] == "todo.send"]
    assert act["member_id"] == "alice" and act["via"] == "console" and act["details"]["sender"] == "alias.billing"
    shown = http.get(sent.headers["location"]).text
    assert "The email has been sent." in shown and "billing@acme.fr" in shown
    # Posting again (a reload, a second tab) sends nothing more.
    again = http.post(f"/todos/{todo}/send", data={"csrf": csrf_of(page), "sender": "alias.billing"})
    assert again.status_code == 409 and len(smtp_server.messages()) == 1


def test_a6_a_sender_not_offered_is_refused_and_nothing_leaves(base, world, smtp_server):
    world.transport = smtp_factory(smtp_server.host, smtp_server.port)
    http = signed_in(base)
    todo = world.todo["C3"]
    for sender in ("member.mallory", "alias.nope", "someone@evil.example", ""):
        refused = post_form(http, f"/todos/{todo}", f"/todos/{todo}/send", {"sender": sender})
        assert refused.status_code == 422, sender
    assert smtp_server.messages() == [] and _todo(world, "C3")["status"] == "open"


def test_r1_answer_a_reply_todo_in_the_customers_thread(base, world, smtp_server):
    world.transport = smtp_factory(smtp_server.host, smtp_server.port)
    http = signed_in(base, "alice")
    todo = world.todo["reply"]
    page = http.get(f"/todos/{todo}").text
    assert "Je paierai vendredi." in page and '<option value="member.alice" selected>' in page
    empty = http.post(f"/todos/{todo}/send", data={"csrf": csrf_of(page), "sender": "member.alice", "answer": "  "})
    assert empty.status_code == 422 and smtp_server.messages() == []
    answer = "Merci, nous attendons votre paiement.\n<b>Alice</b>"
    sent = http.post(f"/todos/{todo}/send", data={"csrf": csrf_of(page), "sender": "member.alice", "answer": answer})
    assert sent.status_code == 303
    (received,) = smtp_server.messages()
    assert received["To"] == "paul@martin.fr" and received["In-Reply-To"] == "<reply-1.paul@martin.fr>"
    assert (
        received["Subject"].startswith("RE: ") and "nous attendons votre paiement" in received.get_body(("plain",)).get_content()
    )
    assert _todo(world, "reply")["status"] == "sent"


def test_r8_relink_moves_the_message_and_its_reply_todo_recorded_with_the_member(base, world):
    http = signed_in(base, "bob")
    (message,) = world.rows(InboxMessageRow, InboxMessageRow.kind == "reply")
    page = http.get(f"/inbox/{message['id']}")
    assert page.status_code == 200 and "Je paierai vendredi." in page.text
    unknown = post_form(http, f"/inbox/{message['id']}", f"/inbox/{message['id']}/relink", {"customer": "NOPE"})
    assert unknown.status_code == 404 and "No customer &#39;NOPE&#39;" in unknown.text
    moved = post_form(http, f"/inbox/{message['id']}", f"/inbox/{message['id']}/relink", {"customer": "C3"})
    assert moved.status_code == 303 and moved.headers["location"] == f"/inbox/{message['id']}?flash=relinked"
    with world.app.session() as s:
        c3 = s.scalar(select(CustomerRow.id).where(CustomerRow.external_id == "C3"))
    (after,) = world.rows(InboxMessageRow, InboxMessageRow.id == message["id"])
    assert after["customer_id"] == c3 and after["match_by"] == "relinked"
    assert _todo(world, "reply")["status"] == "dismissed"  # C1 has no reply behind its to-do any more (R8)
    (new_todo,) = world.rows(TodoRow, TodoRow.kind == "reply", TodoRow.status == "open")
    assert new_todo["customer_id"] == c3
    (act,) = [a for a in world.activity() if a["action"] == "inbox.relink"]
    assert act["member_id"] == "bob" and act["target"] == f"inbox:{message['id']}" and act["details"]["customer"] == "C3"


def test_r8_delete_a_message_needs_the_box_ticked(base, world):
    http = signed_in(base)
    (message,) = world.rows(InboxMessageRow, InboxMessageRow.kind == "reply")
    page = f"/inbox/{message['id']}"
    assert post_form(http, page, f"{page}/delete").status_code == 422
    assert post_form(http, page, f"{page}/delete", {"confirm": "yes"}).status_code == 303
    (after,) = world.rows(InboxMessageRow, InboxMessageRow.id == message["id"])
    assert after["status"] == "deleted" and after["text"] is None
    assert [a["action"] for a in world.activity()][-1] == "inbox.delete"


def test_c10_mark_an_invalid_contact_valid_and_c9_acknowledge_its_alert(base, world):
    http = signed_in(base, "bob")
    page = http.get("/contacts/invalid")
    assert page.status_code == 200 and "greta@mueller.de" in page.text and "hans@mueller.de" not in page.text
    (greta,) = world.rows(ContactRow, ContactRow.email == "greta@mueller.de")
    assert post_form(http, "/contacts/invalid", f"/contacts/{greta['id']}/valid").status_code == 303
    assert world.rows(ContactRow, ContactRow.email == "greta@mueller.de")[0]["valid"] is True
    assert "greta@mueller.de" not in http.get("/contacts/invalid").text
    (alert,) = world.rows(AlertRow)
    alerts = http.get("/alerts").text
    assert "greta@mueller.de" in alerts
    assert post_form(http, "/alerts", f"/alerts/{alert['id']}/ack").status_code == 303
    (acked,) = world.rows(AlertRow)
    assert acked["acked_by"] == "bob" and acked["acked_at"] is not None
    assert "No alerts." in http.get("/alerts").text and "greta@mueller.de" in http.get("/alerts?all=1").text
    assert [a["action"] for a in world.activity()][1:] == ["contact.mark_valid", "alert.ack"]


def test_pause_and_resume_a_customer_from_its_page(base, world):
    http = signed_in(base, "alice")
    bad = post_form(http, "/customers/C2", "/customers/C2", {"action": "pause", "until": "2026-12-01", "reason": "dispute"})
    assert bad.status_code == 422 and "past" in bad.text
    paused = post_form(
        http, "/customers/C2", "/customers/C2", {"action": "pause", "until": "2027-01-15", "reason": "promise", "note": "call"}
    )
    assert paused.status_code == 303
    (pause,) = world.rows(PauseRow)
    assert (pause["reason"], str(pause["until"]), pause["created_by"], pause["note"]) == (
        "promise",
        "2027-01-15",
        "alice",
        "call",
    )
    page = http.get("/customers/C2").text
    assert "until 2027-01-15" in page and "Resume now" in page
    assert post_form(http, "/customers/C2", "/customers/C2", {"action": "resume"}).status_code == 303
    assert world.rows(PauseRow)[0]["ended_how"] == "resumed"
    assert [a["action"] for a in world.activity()][1:] == ["customer.pause", "customer.resume"]


# --- what pages show ------------------------------------------------------------------------------


def test_r1_e6_a_customers_timeline_has_mail_both_ways_todos_and_pauses_in_the_companys_time(base, world):
    http = signed_in(base)
    page = http.get("/customers/C1").text
    # The courtesy reminder left at 07:30 UTC: 08:30 in Paris.
    assert re.search(r'2026-12-04 08:30</span>\s*<span class="what"><span class="badge out">sent</span> reminder', page)
    assert "Je paierai" not in page and "RE: Rappel" in page and "/todos/" in page
    assert "1 200.00 EUR" in page and "+33 1 23 45 67 89" in page
    assert "1–3 of 3 events" in page
    first = http.get("/customers/C1?limit=2").text
    assert "1–2 of 3 events" in first and 'href="/customers/C1?limit=2&amp;offset=2"' in first
    assert "3–3 of 3 events" in http.get("/customers/C1?limit=2&offset=2").text


def test_e6_an_opened_email_says_so(base, world):
    from sqlalchemy import update

    with world.app.store.session() as s:
        s.execute(update(MessageRow).where(MessageRow.kind == "reminder").values(opened_at=NOW))
    assert "opened 2026-12-14 10:30" in signed_in(base).get("/customers/C1").text


def test_lists_are_pages_with_their_total(base, world):
    http = signed_in(base)
    page = http.get("/customers?limit=2").text
    assert "1–2 of 3 customers" in page and "C1" in page and "C2" in page and "Café du Port" not in page
    assert "Café du Port" in http.get("/customers?limit=2&offset=2").text
    assert "1–1 of 1 customers" in http.get("/customers?q=caf").text
    todos = http.get("/todos").text
    assert "1–4 of 4 to-dos" in todos
    mine = signed_in(base, "bob").get("/todos?mine=1").text
    assert "Café du Port" in mine and "Müller" not in mine
    assert "1–2 of 2 messages" in http.get("/inbox?status=all").text
    assert "#1" in http.get("/applies").text and "member.alice" in http.get("/applies/1").text


def test_everything_shown_is_escaped(base, world, tmp_path):
    from dunningops.ledger.importer import import_file

    path = tmp_path / "more.csv"
    path.write_text(
        "external_id,name,country,locale,currency,account_manager,plan\nC9,<script>alert(1)</script> & Co,FR,fr_FR,EUR,,\n"
    )
    import_file(world.app.store, "customers", path, now=NOW)
    http = signed_in(base)
    for page in ("/customers", "/customers/C9", "/customers?q=%3Cscript"):
        text = http.get(page).text
        assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in text


def test_errors_are_pages_with_their_status_never_a_traceback(base, world):
    http = signed_in(base)
    for path, status in (
        ("/todos/999999", 404),
        ("/inbox/999999", 404),
        ("/applies/999999", 404),
        ("/customers/NOPE", 404),
        ("/todos/99999999999999999999999", 404),
        ("/customers?limit=100000", 422),
        ("/todos?status=whatever", 422),
    ):
        answer = http.get(path)
        assert answer.status_code == status, path
        assert "Traceback" not in answer.text and "sqlalchemy" not in answer.text.lower() and "<h1>" in answer.text
    assert "no to-do" not in http.get("/todos/999999").text and "No to-do #999999" in http.get("/todos/999999").text


def test_pages_carry_headers_that_keep_them_to_themselves(base):
    answer = signed_in(base).get("/")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
    css = client(base).get("/static/console.css")
    assert css.status_code == 200 and "@media" in css.text


# --- pages run a few queries, whatever the store holds -------------------------------------------------


def _pages(world, customers: int, customer: str) -> dict[str, str]:
    """The console's pages, as paths into a store holding ``customers`` customers; ``customer``'s timeline."""
    return {
        "home": "/",
        "to-dos": "/todos",
        "to-dos, 200 a page": "/todos?limit=200",
        "customers": "/customers",
        "customers, 200 a page": "/customers?limit=200",
        "customers, the last page": f"/customers?offset={customers - 2}",
        "customers, a search": "/customers?q=c",
        "a customer's timeline": f"/customers/{customer}",
        "a customer's timeline, a later page": f"/customers/{customer}?limit=2&offset=2",
        "a to-do": f"/todos/{world.todo['C3']}",
        "inbox": "/inbox?status=all",
        "inbox, 200 a page": "/inbox?status=all&limit=200",
        "invalid contacts": "/contacts/invalid",
        "alerts": "/alerts",
        "applies": "/applies",
    }


def _statements(http, counted: StatementCounter, pages: dict[str, str]) -> dict[str, list[str]]:
    """The SQL statements each page runs (each page opened once before, so that nothing warms up in the count)."""
    seen = {}
    for name, path in pages.items():
        assert http.get(path).status_code == 200, path
        counted.take()
        answer = http.get(path)
        seen[name] = counted.take()
        assert answer.status_code == 200, path
    return seen


# A page may run a statement or two more, or fewer, as the rows it shows differ (a customer without
# contacts skips their contact functions): never one more per row.
SLACK = 2


def test_each_page_runs_the_same_few_queries_whatever_the_store_holds(world, live_server):
    """No query per row: a console page runs the same few statements on the small store and on one holding
    3,000 customers, 9,000 invoices, 30,000 messages sent, 1,000 to-dos and 1,000 replies (a page of 200
    rows included). Speed itself is measured by ``python -m benchmarks.console``, not here."""
    http = signed_in(live_server(world.web()))
    with StatementCounter(world.app.store.engine) as counted:
        small = _statements(http, counted, _pages(world, 3, "C1"))
        fill_big(world, customers=3_000, messages=30_000, invoices_per_customer=3, todos=1_000, received=1_000)
        big = _statements(http, counted, _pages(world, 3_003, "K003000"))
    changed = {
        name: (len(small[name]), len(big[name]), big[name]) for name in small if abs(len(big[name]) - len(small[name])) > SLACK
    }
    assert changed == {}
    # A page is a few statements (its transactions' BEGINs, the member's session, the config included).
    assert max(len(s) for s in big.values()) <= 25, {name: len(s) for name, s in big.items()}
    # The customer's ten reminders, on one page; the other pages say how many they hold.
    assert "1–10 of 10 events" in http.get("/customers/K003000").text
    assert "1–12 of 12 events" in http.get("/customers/K000001").text  # its reminders, a to-do and a reply
    assert "3,003 customers" in http.get("/customers").text
    assert "of 1,004 to-dos" in http.get("/todos").text
    assert "of 1,002 messages" in http.get("/inbox?status=all").text


# --- `dunningops member` ------------------------------------------------------------------------


def test_member_set_password_from_stdin_then_list(run, v1, database_url):
    assert run("apply", "--config", v1, "--database-url", database_url, "--auto-approve").exit_code == 0
    common = ("--config", v1, "--database-url", database_url)
    result = run("member", "set-password", "alice", "--password-stdin", *common, input="correct horse battery staple\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "The console password of alice (Alice Martin) is set.\n"
    listed = run("member", "list", *common)
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "EMAIL", "ROLE", "PASSWORD", "SESSIONS"]
    assert "set 2026-11-23" in lines[1] and lines[1].startswith("alice") and lines[2].split()[-2:] == ["none", "0"]


def test_member_set_password_asks_twice_and_refuses_what_it_must(run, v1, database_url):
    assert run("apply", "--config", v1, "--database-url", database_url, "--auto-approve").exit_code == 0
    common = ("--config", v1, "--database-url", database_url)
    typed = run("member", "set-password", "bob@acme.fr", *common, input="a good long password\na good long password\n")
    assert typed.exit_code == 0 and "bob (Bob Durand) is set" in typed.stdout
    assert "a good long password" not in typed.output
    mismatch = run("member", "set-password", "bob", *common, input="one long password!\nanother one entirely\n")
    assert mismatch.exit_code == 1  # click asks again, then input runs out
    short = run("member", "set-password", "bob", "--password-stdin", *common, input="too short\n")
    assert short.exit_code == 1 and short.stderr == "Error: the password is 9 characters long: at least 12, please\n"
    unknown = run("member", "set-password", "mallory", "--password-stdin", *common, input="long enough password\n")
    assert unknown.exit_code == 1 and "no member 'mallory' in the applied config" in unknown.stderr


def test_member_set_password_help_snapshot(run, snapshot):
    result = run("member", "set-password", "--help")
    assert result.exit_code == 0
    assert result.stdout == snapshot
