"""R5 on the corpus of tests/mail: each message matched as expected.yaml says, against a real store
seeded with the reminders the corpus answers; and `inbox explain` as users run it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import insert

from dunningops.inbox.people import explain
from dunningops.store import open_store
from dunningops.store.schema import ContactRow, CustomerRow, MessageRow

MAIL = Path(__file__).with_name("mail")
EXPECTED = yaml.safe_load((MAIL / "expected.yaml").read_text())
AT = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
MATCHED = {name: spec["match"] for name, spec in EXPECTED["messages"].items() if "match" in spec}


def seed(store) -> None:
    """The corpus's customers, their contacts (every address a reminder went to) and the reminders, as sent."""
    with store.session() as s:
        ids = {}
        for external, name in EXPECTED["customers"].items():
            ids[external] = s.execute(
                insert(CustomerRow.__table__)
                .values(external_id=external, name=name, origin="import", created_at=AT, updated_at=AT)
                .returning(CustomerRow.__table__.c.id)
            ).scalar_one()
        addresses = sorted({(m["customer"], a) for m in EXPECTED["sent"] for a in m["to"]})
        s.execute(
            insert(ContactRow.__table__),
            [
                {"customer_id": ids[c], "email": a, "is_primary": False, "valid": True, "created_at": AT, "updated_at": AT}
                for c, a in addresses
            ],
        )
        s.execute(
            insert(MessageRow.__table__),
            [
                {
                    "message_id": m["message_id"],
                    "kind": "reminder",
                    "automatic": True,
                    "customer_id": ids[m["customer"]],
                    "sender_ref": "alias.billing",
                    "from_address": "relances@ateliers-durand.fr",
                    "to_addresses": m["to"],
                    "cc_addresses": [],
                    "bcc_addresses": [],
                    "subject": "Rappel",
                    "invoice_ids": [],
                    "status": "sent",
                    "created_at": AT,
                    "sent_at": AT,
                }
                for m in EXPECTED["sent"]
            ],
        )


@pytest.fixture
def store(database_url: str):
    s = open_store(database_url)
    seed(s)
    yield s
    s.dispose()


def test_r5_every_corpus_message_is_matched_as_expected(store):
    files = [MAIL / name for name in sorted(MATCHED)]
    with store.session() as s:
        results = {Path(r["file"]).name: r for r in explain(files, s)}
    got = {name: {"customer": r["match"]["customer"], "by": r["match"]["by"]} for name, r in results.items()}
    want = {name: {"customer": m["customer"], "by": m["by"]} for name, m in MATCHED.items()}
    assert got == want


def test_inbox_explain_json_prints_one_object_per_message(run, tmp_path):
    files = [MAIL / "bounce-postfix-user-unknown.eml", MAIL / "auto-reply-auto-submitted-fr.eml"]
    url = f"sqlite:///{tmp_path}/state.db"
    result = run("inbox", "explain", *files, "--format", "json", "--config", tmp_path, "--database-url", url)
    assert result.exit_code == 0, result.output
    decoder, text, objects = json.JSONDecoder(), result.output, []
    while text.strip():
        obj, end = decoder.raw_decode(text.lstrip())
        objects.append(obj)
        text = text.lstrip()[end:]
    assert [Path(o["file"]).name for o in objects] == [f.name for f in files]
    for o in objects:
        assert o["kind"] in ("reply", "auto_reply", "bounce", "complaint") and "match" in o and "bounce" in o
    bounce = next(o for o in objects if o["kind"] == "bounce")
    assert {"recipient", "status", "permanent", "original_message_id"} <= set(bounce["bounce"])
