"""The JSON API /api/v1 over real HTTP (uvicorn on loopback, httpx), on SQLite and PostgreSQL:
tokens and scopes, C7 upserts with the CSV import's checks and idempotence, reads, bounds, and
the OpenAPI description."""

from __future__ import annotations

import itertools
import json
import os
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api_helpers import KINDS, LEDGER_FIXTURES, Clock, client, fixture_items, ledger_state, make_app, token
from cycle_helpers import paris
from dunningops.app import App
from dunningops.dunning.cycle import run_send
from dunningops.dunning.pauses import pause_customer
from dunningops.errors import NotFoundError
from dunningops.ledger.importer import import_file, ledger_counts
from dunningops.ledger.issues import LedgerImportError
from dunningops.store.activity import recent_activity
from dunningops.store.schema import ContactRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.web import create_app
from dunningops.web.api import ENDPOINTS, models
from dunningops.web.api.openapi import build_openapi
from dunningops.web.api.tokens import create_token, list_tokens, revoke_token

API = "/api/v1"


@pytest.fixture
def app(database_url: str, v1: Path):
    app = make_app(database_url, v1)
    yield app
    app.close()


@pytest.fixture
def base(app: App, live_server) -> str:
    return live_server(create_app(app))


_second = itertools.count(1)


@pytest.fixture
def other_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path):
    """A second, empty store on the same backend as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/other.db"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"api_other_{os.getpid()}_{next(_second)}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


def _push(http: httpx.Client, kind: str, items) -> httpx.Response:
    return http.post(f"{API}/{kind}", json=items)


# --- tokens and authentication ----------------------------------------------------------------


def test_auth_missing_unknown_revoked_scope_and_member_gone(app: App, base: str, v1: Path):
    with client(base) as anonymous:
        r = anonymous.get(f"{API}/customers")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json() == {"error": "missing token: send the header Authorization: Bearer <token>"}
        r = anonymous.get(f"{API}/customers", headers={"Authorization": "Basic YWxpY2U6eA=="})
        assert r.status_code == 401 and "Bearer <token>" in r.json()["error"]
        r = anonymous.get(f"{API}/customers", headers={"Authorization": "Bearer dno_nope"})
        assert (r.status_code, r.json()) == (401, {"error": "unknown token"})

    reader = token(app, "bob", "read")
    with client(base, reader) as http:
        assert http.get(f"{API}/customers").status_code == 200
        r = _push(http, "customers", fixture_items("customers"))
        assert r.status_code == 403 and "writing needs a token of scope write" in r.json()["error"]
    with app.session() as s:
        assert ledger_counts(s)["customers"] == 0
        (row,) = list_tokens(s)
        assert row["last_used_at"] == app.now() and row["member"] == "bob" and row["prefix"] == reader[:12]
        revoke_token(s, row["id"], now=app.now())
    with client(base, reader) as http:
        assert http.get(f"{API}/customers").json() == {"error": "this token was revoked"}

    # A member who leaves the config takes their tokens with them.
    chloe = token(app, "chloe", "write")
    with client(base, chloe) as http:
        assert http.get(f"{API}/todos").status_code == 200
        config = v1 / "dunningops.yaml"
        config.write_text("\n".join(line for line in config.read_text().splitlines() if "id: chloe" not in line) + "\n")
        make_app(app.url, v1).close()  # applies the config without her
        r = http.get(f"{API}/todos")
        assert (r.status_code, r.json()) == (401, {"error": "this token's member 'chloe' is no longer in the config"})


def test_token_needs_a_member_of_the_applied_config(app: App):
    with app.session() as s, pytest.raises(NotFoundError, match="no member 'zed' in the applied config"):
        create_token(s, member="zed", scope="read", label=None, now=app.now())


def test_token_cli_create_list_revoke(run, repo, live_server):
    v1, url = repo
    created = run(
        "token", "create", "--member", "alice", "--scope", "read", "--label", "erp", "--config", v1, "--database-url", url
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("dno_") and len(secret) > 40
    assert "shown only this once" in created.stderr
    listed = run("token", "list", "--config", v1, "--database-url", url)
    assert secret[:12] + "…" in listed.stdout and "erp" in listed.stdout and "never" in listed.stdout
    assert secret not in listed.stdout  # only a prefix, ever
    with App(config_dir=v1, database_url=url, env={}) as app:
        with app.session() as s:
            (row,) = list_tokens(s)
            assert row["prefix"] == secret[:12] and row["scope"] == "read"
        with client(live_server(create_app(app)), secret) as http:
            assert http.get(f"{API}/customers").json()["total"] == 3
    revoked = run("token", "revoke", "1", "--config", v1, "--database-url", url)
    assert (revoked.exit_code, revoked.stdout) == (0, "Token #1 (alice, read) is revoked.\n")
    again = run("token", "revoke", "1", "--config", v1, "--database-url", url)
    assert again.exit_code == 1 and "already revoked" in again.stderr
    unknown = run("token", "create", "--member", "zed", "--scope", "write", "--config", v1, "--database-url", url)
    assert unknown.exit_code == 1 and unknown.stderr.startswith("Error: no member 'zed' in the applied config")
    as_json = json.loads(
        run(
            "token", "create", "--member", "bob", "--scope", "write", "--format", "json", "--config", v1, "--database-url", url
        ).stdout
    )
    assert (as_json["id"], as_json["member"], as_json["scope"]) == (2, "bob", "write")


def test_token_create_help_snapshot(run, snapshot):
    result = run("token", "create", "--help")
    assert result.exit_code == 0
    assert result.output == snapshot


# --- upserts ----------------------------------------------------------------------------------


def test_c7_upsert_then_the_same_again_changes_nothing(app: App, base: str):
    with client(base, token(app)) as http:
        first = [_push(http, kind, fixture_items(kind)).json() for kind in KINDS]
        assert [(r["kind"], r["created"], r["updated"], r["unchanged"]) for r in first] == [
            ("customers", 3, 0, 0),
            ("contacts", 4, 0, 0),
            ("invoices", 4, 0, 0),
            ("payments", 2, 0, 0),
        ]
        assert first[1]["links_changed"] == 4 and first[0]["links_changed"] is None
        state = ledger_state(app)
        # {"items": [...]} is the same request as the bare array.
        again = [http.post(f"{API}/{kind}", json={"items": fixture_items(kind)}).json() for kind in KINDS]
        assert [(r["created"], r["updated"], r["unchanged"]) for r in again] == [(0, 0, 3), (0, 0, 4), (0, 0, 4), (0, 0, 2)]
        assert again[0]["message"] == "customers: 3 items: 0 created, 0 updated, 3 unchanged; nothing changed."
        assert ledger_state(app) == state
        with app.session() as s:
            done = [(a["member_id"], a["via"], a["action"]) for a in recent_activity(s) if a["via"] == "api"]
        assert done == [("alice", "api", f"{kind}.upsert") for kind in reversed(KINDS)]  # only the changes

        changed = fixture_items("customers")
        changed[1]["name"] = "Müller & Söhne GmbH"
        r = _push(http, "customers", changed).json()
        assert (r["created"], r["updated"], r["unchanged"]) == (0, 1, 2)

        # C7 functions replaced; C3 one primary; C10 validity set, kept, and set back.
        anne = {"customer_external_id": "C1", "email": "anne@martin.fr", "name": "Anne Martin", "job": "Comptable"}
        r = _push(http, "contacts", [{**anne, "functions": ["payer"], "primary": True}])
        assert (r.json()["updated"], r.json()["links_changed"]) == (0, 2)  # an item is the whole contact, as a row is
        contacts = {c["email"]: c for c in http.get(f"{API}/customers/C1").json()["contacts"]}
        assert contacts["anne@martin.fr"]["functions"] == ["payer"] and contacts["anne@martin.fr"]["is_primary"]
        assert not contacts["paul@martin.fr"]["is_primary"]
        key = {"customer_external_id": "C3", "email": "rechnungen@schmid.ch"}
        assert _push(http, "contacts", [{**key, "valid": False}]).json()["updated"] == 1
        assert _validity(app, "rechnungen@schmid.ch") == (False, "marked invalid in the ledger")
        assert _push(http, "contacts", [key]).json()["unchanged"] == 1  # absent: left as it is
        assert _validity(app, "rechnungen@schmid.ch") == (False, "marked invalid in the ledger")
        assert _push(http, "contacts", [{**key, "valid": True}]).json()["updated"] == 1
        assert _validity(app, "rechnungen@schmid.ch") == (True, None)


def _validity(app: App, email: str) -> tuple[bool, str | None]:
    with app.session() as s:
        row = s.execute(select(ContactRow.valid, ContactRow.invalid_reason).where(ContactRow.email == email)).one()
    return row.valid, row.invalid_reason


def test_one_bad_item_among_good_ones_422_and_nothing_written(app: App, base: str, tmp_path: Path):
    items = [
        {"external_id": "C1", "name": "Boulangerie Martin SARL", "country": "FR"},
        {"external_id": "C2", "name": "", "country": "FRA", "account_manager": "zed"},
        {"external_id": "C1", "name": "Twice"},
        "not an object",
        {"external_id": "C5", "name": "Ok", "plann": "standard"},
    ]
    with client(base, token(app)) as http:
        r = _push(http, "customers", items)
        assert r.status_code == 422
        body = r.json()
        assert body["error"] == "6 errors in 4 of 5 items; nothing was written"
        assert body["errors"] == [
            {"index": 1, "field": "account_manager", "message": "unknown member 'zed' (a member id or email from the config)"},
            {"index": 1, "field": "country", "message": "'FRA' is not a country code (ISO 3166, e.g. FR)"},
            {"index": 1, "field": "name", "message": "is empty (required)"},
            {"index": 2, "field": "external_id", "message": "duplicate external_id 'C1' (first on item 0)"},
            {"index": 3, "field": None, "message": "is not a JSON object"},
            {"index": 4, "field": "plann", "message": "unknown field (did you mean 'plan'?)"},
        ]
        with app.session() as s:
            assert ledger_counts(s) == {"customers": 0, "contacts": 0, "invoices": 0, "payments": 0}
            assert [a for a in recent_activity(s) if a["via"] == "api"] == []
        r = _push(
            http,
            "invoices",
            [{"external_id": "I9", "customer_external_id": "C9", "number": "F9", "due_date": "2026-13-01", "amount": "-5"}],
        )
        assert r.status_code == 422
        assert [(e["field"], e["message"]) for e in r.json()["errors"]] == [
            ("amount", "'-5' is negative: amounts are positive (a credit note is a payment of kind credit_note)"),
            ("customer_external_id", "unknown customer 'C9' (import customers first)"),
            ("due_date", "'2026-13-01' is not a date (expected YYYY-MM-DD)"),
        ]

    # The same rows through `ledger import`: the same messages, row for item.
    path = tmp_path / "customers.csv"
    path.write_text("external_id,name,country,account_manager\nC1,Boulangerie Martin SARL,FR,\nC2,,FRA,zed\n")
    with pytest.raises(LedgerImportError) as raised:
        import_file(app.store, "customers", path, now=app.now())
    assert [(i.column, i.message) for i in raised.value.issues] == [(e["field"], e["message"]) for e in body["errors"][:3]]


def test_api_and_ledger_import_give_the_same_store(app: App, base: str, other_url: str, v1: Path):
    with client(base, token(app)) as http:
        for kind in KINDS:
            assert _push(http, kind, fixture_items(kind)).status_code == 200
    with make_app(other_url, v1) as by_file:
        for kind in KINDS:
            import_file(by_file.store, kind, LEDGER_FIXTURES / f"{kind}.csv", now=app.now())
        assert ledger_state(by_file) == ledger_state(app)
    # And the file, imported where the API wrote, finds nothing to change.
    for kind in KINDS:
        summary = import_file(app.store, kind, LEDGER_FIXTURES / f"{kind}.csv", now=app.now())
        assert (summary.added, summary.changed, summary.links_changed) == (0, 0, 0), kind


# --- bounds and errors ------------------------------------------------------------------------


def test_size_bounds_413(app: App, base: str):
    with client(base, token(app)) as http:
        r = _push(http, "customers", [{}] * 10_001)
        assert (r.status_code, r.json()) == (
            413,
            {"error": "10,001 items: at most 10,000 per request; send them in several requests"},
        )
        big = json.dumps([{"external_id": "C1", "name": "x" * (11 * 1024 * 1024)}]).encode()
        r = http.post(f"{API}/customers", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "over 10 MB" in r.json()["error"]

        def chunks():  # no Content-Length: counted as it arrives
            yield b'[{"external_id": "C1", "name": "'
            for _ in range(11):
                yield b"x" * (1024 * 1024)
            yield b'"}]'

        r = http.post(f"{API}/customers", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        with app.session() as s:
            assert ledger_counts(s)["customers"] == 0


def test_errors_are_json_with_their_status(app: App, base: str):
    with client(base, token(app)) as http:
        r = http.post(f"{API}/customers", content=b"[{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"].startswith("the body is not valid JSON")
        r = http.post(f"{API}/customers", json={"customers": []})
        assert r.status_code == 400 and "a JSON array of items" in r.json()["error"]
        r = http.get(f"{API}/customers", params={"limit": "0"})
        assert (r.status_code, r.json()) == (400, {"error": "limit: 0 is out of range (1 to 1000)"})
        r = http.get(f"{API}/customers", params={"limt": "5"})
        assert r.status_code == 400 and "unknown query parameter 'limt'" in r.json()["error"]
        r = http.get(f"{API}/customers/NOPE")
        assert (r.status_code, r.json()) == (404, {"error": "no customer 'NOPE'"})
        assert http.get(f"{API}/customers/NOPE/messages").status_code == 404
        r = http.delete(f"{API}/customers")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST" and "error" in r.json()
        r = http.get(f"{API}/nothing/here")
        assert r.status_code == 404 and "openapi.json" in r.json()["error"]
        assert all("Traceback" not in x.text for x in (r,))


# --- reads ------------------------------------------------------------------------------------

LEDGER = {
    "customers": [
        {"external_id": "C1", "name": "Boulangerie Martin SARL", "country": "FR", "account_manager": "bob"},
        {"external_id": "C2", "name": "Müller GmbH", "country": "DE", "locale": "de_DE"},
        {"external_id": "C3", "name": "Smith Ltd", "country": "GB", "locale": "en_GB"},
    ],
    "contacts": [
        {"customer_external_id": "C1", "email": "paul@martin.fr", "name": "Paul Martin", "functions": ["payer"], "primary": True},
        {"customer_external_id": "C1", "email": "anne@martin.fr", "functions": "accountant"},
        {"customer_external_id": "C2", "email": "hans@mueller.de", "primary": True},
        {"customer_external_id": "C3", "email": "bad@smith.example", "functions": ["payer"], "valid": False},
    ],
    "invoices": [
        {"external_id": "I1", "customer_external_id": "C1", "number": "FA-1", "due_date": "2026-12-07", "amount": 1200},
        {"external_id": "I2", "customer_external_id": "C1", "number": "FA-2", "due_date": "2026-12-08", "amount": "300.00"},
        {"external_id": "I3", "customer_external_id": "C2", "number": "FA-3", "due_date": "2026-12-07", "amount": 80.5},
        {"external_id": "I4", "customer_external_id": "C3", "number": "FA-4", "due_date": "2026-12-07", "amount": "99"},
    ],
}


def test_reads_customers_state_todos_and_messages(database_url: str, v1: Path, tmp_path: Path, live_server):
    clock = Clock()
    with make_app(database_url, v1, clock) as app:
        base = live_server(create_app(app))
        with client(base, token(app, "alice", "write")) as http:
            for kind, items in LEDGER.items():
                assert _push(http, kind, items).status_code == 200
        factory = lambda config: MaildirTransport(tmp_path / "maildir")
        for day in (4, 14):
            run_send(app.store, at=paris(2026, 12, day), transport_factory=factory)
        clock.now = paris(2026, 12, 14, 10)
        with app.session() as s:
            pause_customer(s, "C2", until=date(2026, 12, 31), reason="dispute", note="wrong amount", by="alice", now=clock.now)

        with client(base, token(app, "bob", "read")) as http:
            page = http.get(f"{API}/customers").json()
            assert (page["total"], page["offset"], page["limit"]) == (3, 0, 100)
            c1, c2, _ = page["customers"]
            assert c1 == {
                "external_id": "C1",
                "name": "Boulangerie Martin SARL",
                "country": "FR",
                "currency": "EUR",
                "origin": "import",
                "plan": "standard",
                "contacts": 2,
                "open_invoices": 2,
                "outstanding_cents": 150000,
                "days_overdue": 7,
                "paused_until": None,
            }
            assert c2["paused_until"] == "2026-12-31" and c2["outstanding_cents"] == 8050
            second = http.get(f"{API}/customers", params={"limit": 1, "offset": 1}).json()
            assert [c["external_id"] for c in second["customers"]] == ["C2"] and second["total"] == 3

            detail = http.get(f"{API}/customers/C2").json()
            assert detail["pause_reason"] and detail["paused_until"] == "2026-12-31"
            (pause,) = detail["pauses"]
            assert (pause["reason"], pause["note"], pause["created_by"], pause["ended_how"]) == (
                "dispute",
                "wrong amount",
                "alice",
                None,
            )
            c1_detail = http.get(f"{API}/customers/C1").json()
            assert [i["external_id"] for i in c1_detail["open_invoices"]] == ["I1", "I2"]
            assert c1_detail["open_invoices"][0]["days_overdue"] == 7 and c1_detail["account_manager"] == "bob"
            assert {c["email"]: c["functions"] for c in c1_detail["contacts"]} == {
                "paul@martin.fr": ["payer"],
                "anne@martin.fr": ["accountant"],
            }
            c3 = http.get(f"{API}/customers/C3").json()["contacts"][0]
            assert (c3["valid"], c3["invalid_reason"]) == (False, "marked invalid in the ledger")

            messages = http.get(f"{API}/customers/C1/messages").json()["messages"]
            assert messages and {m["customer"] for m in messages} == {"C1"}
            reminder = messages[-1]
            assert (reminder["kind"], reminder["status"], reminder["automatic"], reminder["step_id"]) == (
                "reminder",
                "sent",
                True,
                "courtesy",
            )
            assert http.get(f"{API}/customers/C1/messages", params={"limit": 1}).json()["messages"] == messages[:1]

            todos = http.get(f"{API}/customers/C1/todos").json()["todos"]
            assert [(t["kind"], t["step_id"], t["status"], t["customer"]) for t in todos] == [("email", "overdue", "open", "C1")]
            assert http.get(f"{API}/customers/C1/todos", params={"status": "done"}).json() == {"todos": []}
            everyone = http.get(f"{API}/todos").json()["todos"]
            assert {t["customer"] for t in everyone} == {"C1", "C2", "C3"}
            emails = http.get(f"{API}/todos", params={"kind": "email", "status": "all"}).json()["todos"]
            assert [t["customer"] for t in emails] == sorted(t["customer"] for t in emails)
            assert http.get(f"{API}/todos", params={"status": "later"}).status_code == 400
            assert http.get(f"{API}/customers/NOPE/todos").status_code == 404


# --- the OpenAPI description ------------------------------------------------------------------


def test_openapi_paths_snapshot(snapshot):
    doc = build_openapi(ENDPOINTS)
    assert sorted(f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops) == snapshot


def test_openapi_describes_every_route_and_its_examples_are_accepted(app: App, live_server):
    web = create_app(app)
    base = live_server(web)
    with client(base) as anonymous:
        r = anonymous.get(f"{API}/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `dunningops token create`.",
    }
    assert doc == build_openapi(ENDPOINTS)
    described = sorted(f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops)

    served = set()
    for route in web.routes:
        path = getattr(route, "path", "")
        if path.startswith(API) and route.name != "api.fallback":
            served |= {f"{m} {path}" for m in route.methods - {"HEAD"}}
    assert served == set(described)
    _assert_refs_resolve(doc, doc)

    with client(base, token(app)) as http:
        for kind in KINDS:
            body = doc["paths"][f"{API}/{kind}"]["post"]["requestBody"]["content"]["application/json"]
            (example,) = body["examples"].values()
            for item in example["value"]:
                models.ITEM_MODELS[kind].model_validate(item)
            r = _push(http, kind, example["value"])
            assert r.status_code == 200, r.text
            assert r.json()["created"] == len(example["value"])
        customer = doc["paths"][f"{API}/customers"]["post"]["requestBody"]["content"]["application/json"]["examples"]
        external_id = customer["customers"]["value"][0]["external_id"]
        answers = {
            f"{API}/customers": models.CustomerPage,
            f"{API}/customers/{{external_id}}": models.CustomerDetail,
            f"{API}/customers/{{external_id}}/todos": models.TodoList,
            f"{API}/customers/{{external_id}}/messages": models.MessageList,
            f"{API}/todos": models.TodoList,
        }
        for path, model in answers.items():
            schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{model.__name__}"}
            r = http.get(path.replace("{external_id}", external_id))
            assert r.status_code == 200
            model.model_validate(r.json())
        detail = http.get(f"{API}/customers/{external_id}").json()
        assert detail["open_invoices"][0]["outstanding_cents"] == 100000  # 1,200.00 less the 200 paid
        assert {c["email"] for c in detail["contacts"]} == {"paul@martin.example", "compta@martin.example"}


def _assert_refs_resolve(node, doc) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None:
            assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
        for value in node.values():
            _assert_refs_resolve(value, doc)
    elif isinstance(node, list):
        for value in node:
            _assert_refs_resolve(value, doc)


def test_item_models_match_the_import_columns():
    from dunningops.ledger.columns import KINDS as COLUMNS

    for kind, columns in COLUMNS.items():
        fields = models.ITEM_MODELS[kind].model_fields
        assert list(fields) == [c.name for c in columns]
        assert [f.is_required() for f in fields.values()] == [c.required for c in columns]


def test_last_used_is_written_at_most_once_a_minute(app: App, base: str):
    secret = token(app, "alice", "read")
    clock = app.clock
    assert isinstance(clock, Clock)
    with client(base, secret) as http:
        http.get(f"{API}/todos")
        first = clock.now
        clock.now = first + timedelta(seconds=30)
        http.get(f"{API}/todos")
        with app.session() as s:
            assert list_tokens(s)[0]["last_used_at"] == first
        clock.now = first + timedelta(minutes=2)
        http.get(f"{API}/todos")
        with app.session() as s:
            assert list_tokens(s)[0]["last_used_at"] == clock.now


def test_concurrent_upserts_of_the_same_new_items_write_them_once(app: App, base: str):
    from concurrent.futures import ThreadPoolExecutor

    secret = token(app)

    def push(_: int) -> httpx.Response:
        with client(base, secret) as http:
            return _push(http, "customers", fixture_items("customers"))

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(push, range(6)))
    # Writers take turns (SQLite's write lock, PostgreSQL's advisory lock): one creates, the others find them.
    assert [r.status_code for r in answers] == [200] * 6
    assert sorted(r.json()["created"] for r in answers) == [0, 0, 0, 0, 0, 3]
    assert sorted(r.json()["unchanged"] for r in answers) == [0, 3, 3, 3, 3, 3]
    with app.session() as s:
        assert ledger_counts(s)["customers"] == 3


def test_an_unexpected_failure_is_a_500_without_its_details(app: App, base: str, monkeypatch):
    from dunningops.web.api import reads

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/dunningops")

    monkeypatch.setattr(reads, "list_todos", broken)
    with client(base, token(app, "bob", "read")) as http:
        r = http.get(f"{API}/todos")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error: the server could not answer (see its log)"}


def test_a_strangers_request_is_refused_before_its_body_is_read(app: App, base: str):
    with client(base) as anonymous:
        big = b"[" + b" " * (11 * 1024 * 1024) + b"]"
        r = anonymous.post(f"{API}/customers?limt=1", content=big, headers={"Authorization": "Bearer dno_nope"})
    assert (r.status_code, r.json()) == (401, {"error": "unknown token"})


def test_c10_validity_column_reads_the_same_from_a_file(app: App, base: str, tmp_path: Path):
    for kind in ("customers", "contacts"):
        import_file(app.store, kind, LEDGER_FIXTURES / f"{kind}.csv", now=app.now())
    path = tmp_path / "contacts.csv"
    path.write_text("customer_external_id,email,valid\nC2,hans@mueller.de,false\nC3,rechnungen@schmid.ch,\n")
    summary = import_file(app.store, "contacts", path, now=app.now())
    assert (summary.changed, summary.unchanged) == (1, 1)  # C2's turns invalid; C3's row is what it had (no validity: kept)
    with client(base, token(app, "bob", "read")) as http:
        (hans,) = http.get(f"{API}/customers/C2").json()["contacts"]
        assert (hans["valid"], hans["invalid_reason"]) == (False, "marked invalid in the ledger")
        (schmid,) = http.get(f"{API}/customers/C3").json()["contacts"]
        assert schmid["valid"] is True
