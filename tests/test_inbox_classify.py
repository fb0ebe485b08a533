"""The import cycle's parsing and classification, on the corpus in tests/mail/ and on messages built here.

``tests/mail/expected.yaml`` says what each corpus message must give: its kind and the evidence,
a bounce's failed recipient and category (C9), a reply's text without the quoted history, the
customer the matcher must link it to (R5), or the reason it goes to quarantine.
"""

from __future__ import annotations

import base64
import zlib
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dunningops.inbox import headers, parse, reply
from dunningops.inbox.classify import Classification
from dunningops.inbox.parse import (
    MAX_TEXT_CHARS,
    ParsedMail,
    UnparseableMessageError,
    normalise_message_id,
    parse_message,
    to_json,
)
from dunningops.inbox.statuses import categorise, make_bounce, status_in_text

MAIL = Path(__file__).parent / "mail"
EXPECTED: dict[str, Any] = yaml.safe_load((MAIL / "expected.yaml").read_text(encoding="utf-8"))
MESSAGES: dict[str, dict[str, Any]] = EXPECTED["messages"]


def _names(*keys: str) -> list[str]:
    return sorted(name for name, spec in MESSAGES.items() if all(k in spec for k in keys))


def _parsed(name: str) -> ParsedMail:
    return parse_message((MAIL / name).read_bytes())


def _mail(headers: str, body: str = "Bonjour,\n\nMerci.\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode("utf-8")


HEADERS = """From: Julien Lambert <compta@menuiserie-lambert.fr>
To: relances@ateliers-durand.fr
Date: Mon, 30 Nov 2026 10:12:38 +0100
Message-ID: <test@menuiserie-lambert.fr>
Subject: Re: Relance"""


# --- the corpus ------------------------------------------------------------------------------------


def test_every_corpus_file_has_an_expectation() -> None:
    files = sorted(p.name for p in MAIL.glob("*.eml"))
    assert files == sorted(MESSAGES), "each tests/mail/*.eml needs an entry in expected.yaml, and the reverse"


@pytest.mark.parametrize("name", _names("kind"))
def test_corpus_kind_and_evidence(name: str) -> None:
    spec = MESSAGES[name]
    parsed = _parsed(name)
    assert parsed.classification.kind == spec["kind"]
    assert spec["evidence_contains"] in parsed.classification.evidence
    if "subject" in spec:
        assert parsed.subject == spec["subject"]


@pytest.mark.parametrize("name", _names("bounce"))
def test_c9_bounce_names_the_failed_recipient_and_what_it_means(name: str) -> None:
    expected = MESSAGES[name]["bounce"]
    bounces = _parsed(name).classification.bounces
    assert len(bounces) == 1
    got = bounces[0]
    assert {key: getattr(got, key) for key in expected} == expected
    assert got.diagnostic and len(got.diagnostic) <= 300 and "\n" not in got.diagnostic
    assert got.action in ("failed", "delayed")


@pytest.mark.parametrize("name", _names("complaint"))
def test_complaint_names_the_reported_message(name: str) -> None:
    complaint = _parsed(name).classification.complaint
    assert complaint is not None
    expected = MESSAGES[name]["complaint"]
    assert {key: getattr(complaint, key) for key in expected} == expected


@pytest.mark.parametrize("name", _names("reply_text_contains"))
def test_r3_reply_text_is_what_the_sender_wrote(name: str) -> None:
    spec = MESSAGES[name]
    parsed = _parsed(name)
    assert spec["reply_text_contains"] in parsed.reply_text
    assert spec["reply_text_contains"] in parsed.text
    if "reply_text_excludes" in spec:
        assert spec["reply_text_excludes"] not in parsed.reply_text
        assert spec["reply_text_excludes"] in parsed.text, "the excluded line must be in the message, quoted"


@pytest.mark.parametrize("name", _names("defects_contain"))
def test_repaired_messages_parse_and_say_what_was_repaired(name: str) -> None:
    defects = _parsed(name).defects
    assert any(MESSAGES[name]["defects_contain"] in d for d in defects), defects


@pytest.mark.parametrize("name", _names("kind"))
def test_attachments_are_listed(name: str) -> None:
    expected = MESSAGES[name].get("attachments", [])
    got = [{"filename": a.filename, "content_type": a.content_type} for a in _parsed(name).attachments]
    assert got == expected


@pytest.mark.parametrize("name", _names("quarantine"))
def test_unreadable_messages_go_to_quarantine_with_the_reason(name: str) -> None:
    with pytest.raises(UnparseableMessageError, match=MESSAGES[name]["quarantine"]) as raised:
        _parsed(name)
    assert "\n" not in str(raised.value)


def _reference_match(parsed: ParsedMail) -> dict[str, Any]:
    """What expected.yaml's ``match`` means, computed from the parsed ids and addresses (R5)."""
    customer_of = {s["message_id"]: s["customer"] for s in EXPECTED["sent"]}
    originals = [b.original_message_id for b in parsed.classification.bounces]
    if parsed.classification.complaint:
        originals.append(parsed.classification.complaint.original_message_id)
    for by, ids in (("in_reply_to", parsed.in_reply_to), ("references", parsed.references), ("bounce_original", originals)):
        for mid in ids:
            if mid in customer_of:
                return {"customer": customer_of[mid], "by": by}
    owners = {s["customer"] for s in EXPECTED["sent"] if parsed.from_address in s["to"]}
    if len(owners) == 1:
        return {"customer": owners.pop(), "by": "sender"}
    return {"customer": None, "by": "none"}


@pytest.mark.parametrize("name", _names("match"))
def test_r5_expected_match_follows_from_the_parsed_ids(name: str) -> None:
    parsed = _parsed(name)
    assert _reference_match(parsed) == MESSAGES[name]["match"]
    if MESSAGES[name]["match"]["by"] in ("in_reply_to", "references", "bounce_original"):
        assert set(parsed.referenced_ids) & {s["message_id"] for s in EXPECTED["sent"]}


def test_c9_bounces_are_checked_before_auto_replies() -> None:
    raw = (MAIL / "bounce-postfix-user-unknown.eml").read_bytes()
    assert b"Auto-Submitted: auto-replied" in raw
    assert parse_message(raw).classification.kind == "bounce"


def test_to_json_is_what_inbox_explain_prints() -> None:
    data = to_json(_parsed("bounce-postfix-user-unknown.eml"))
    assert data["kind"] == "bounce"
    assert data["bounce"] == data["bounces"][0]
    assert data["bounce"]["category"] == "invalid_address" and data["bounce"]["reporter"] == "rfc3464"
    assert data["date"] == "2026-12-01T08:00:07+00:00"
    assert data["complaint"] is None and data["attachments"] == [] and data["defects"] == []
    reply = to_json(_parsed("broken-mime-missing-close-boundary.eml"))
    assert reply["bounce"] is None and reply["attachments"][0]["filename"] == "avis-de-virement-F2026-0163.pdf"


# --- sizes ---------------------------------------------------------------------------------------


def test_an_attachment_of_20_mb_is_measured_not_decoded() -> None:
    payload = bytes(range(256)) * (20 * 1024 * 1024 // 256) + b"end"
    raw = (
        (
            HEADERS.replace("Subject: Re: Relance", "Subject: Re: Relance - grand livre")
            + '\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\n'
            + "--b1\nContent-Type: text/plain; charset=utf-8\n\nVoici le grand livre demandé.\n\n"
            + '--b1\nContent-Type: application/zip; name="grand-livre.zip"\n'
            + 'Content-Disposition: attachment; filename="grand-livre.zip"\nContent-Transfer-Encoding: base64\n\n'
        ).encode()
        + base64.encodebytes(payload)
        + b"--b1--\n"
    )
    parsed = parse_message(raw)
    assert parsed.attachments == (parse.Attachment("grand-livre.zip", "application/zip", len(payload)),)
    assert parsed.text == "Voici le grand livre demandé.\n"
    assert parsed.size == len(raw)


def test_text_is_bounded() -> None:
    parsed = parse_message(_mail(HEADERS, "é" * (MAX_TEXT_CHARS + 5000)))
    assert len(parsed.text) == MAX_TEXT_CHARS


def test_a_message_over_the_size_limit_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "MAX_MESSAGE_BYTES", 1000)
    with pytest.raises(UnparseableMessageError, match="larger than the limit"):
        parse_message(_mail(HEADERS, "x" * 2000))


# --- what a status means (C9) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action", "text", "category", "permanent"),
    [
        ("5.1.1", "failed", "550 5.1.1 User unknown", "invalid_address", True),
        ("5.1.10", "failed", "RecipientNotFound", "invalid_address", True),
        ("5.1.8", "failed", "550 5.1.8 Sender address rejected: Domain not found", "refused_by_policy", False),
        ("5.2.2", "failed", "552 5.2.2 Mailbox full", "mailbox_full", False),
        ("5.7.1", "failed", "550 5.7.1 Message rejected as spam", "refused_by_policy", False),
        ("5.7.26", "failed", "550 5.7.26 Unauthenticated email is not accepted (DMARC)", "refused_by_policy", False),
        ("4.4.7", "delayed", "Connection timed out", "temporary", False),
        ("4.2.2", "failed", "452 4.2.2 Over quota", "temporary", False),
        ("5.0.0", "failed", "550 5.0.0 <x@y.fr>... User unknown", "invalid_address", True),
        ("5.0.0", "failed", "550 5.0.0 Adresse inconnue", "invalid_address", True),
        ("5.0.0", "failed", "550 5.0.0 Boîte pleine", "mailbox_full", False),
        ("5.0.0", "failed", "554 5.0.0 Blocked by SPF policy", "refused_by_policy", False),
        ("5.0.0", "failed", "554 5.0.0 Service unavailable", "unknown", False),
        ("5.4.1", "failed", "550 5.4.1 Recipient address rejected: Access denied", "unknown", False),
        (None, None, "Raison : utilisateur inconnu", "invalid_address", True),
        (None, None, "421 Service not available, closing transmission channel", "temporary", False),
        (None, None, "The message could not be delivered", "unknown", False),
    ],
)
def test_c9_only_a_hard_failure_of_the_mailbox_condemns_the_address(
    status: str | None, action: str | None, text: str, category: str, permanent: bool
) -> None:
    assert categorise(status, action, text) == (category, permanent)


def test_c9_status_is_read_from_the_diagnostic_when_there_is_no_status_field() -> None:
    bounce = make_bounce("x@y.fr", None, None, "550 5.1.1 <x@y.fr>: Recipient address rejected", None, "postfix-text")
    assert (bounce.status, bounce.category, bounce.permanent, bounce.action) == ("5.1.1", "invalid_address", True, "failed")
    assert status_in_text("host mx[192.168.5.1] said: connection refused") is None
    assert status_in_text("(#5.1.1)") == "5.1.1"
    assert status_in_text("Status: 4.4.7.") == "4.4.7"


def test_c9_a_precise_code_in_the_diagnostic_beats_status_5_0_0() -> None:
    bounce = make_bounce("x@y.fr", "5.0.0", "failed", "smtp; 550 5.1.1 mailbox unavailable", None, "rfc3464")
    assert (bounce.status, bounce.category, bounce.permanent) == ("5.1.1", "invalid_address", True)


def test_c9_a_report_of_successful_delivery_is_not_a_bounce() -> None:
    raw = _dsn(action="relayed", status="2.0.0")
    parsed = parse_message(raw)
    assert parsed.classification.kind == "auto_reply"
    assert "without failure" in parsed.classification.evidence


def test_c9_one_bounce_per_failed_recipient() -> None:
    raw = _dsn(
        action="failed",
        status="5.1.1",
        more="\nFinal-Recipient: rfc822; b@client.fr\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 5.2.2 over quota\n",
    )
    bounces = parse_message(raw).classification.bounces
    assert [(b.recipient, b.category) for b in bounces] == [("a@client.fr", "invalid_address"), ("b@client.fr", "mailbox_full")]
    assert all(b.original_message_id == "<sent@ateliers-durand.fr>" for b in bounces)


def test_c9_global_delivery_status_rfc_6533() -> None:
    raw = (
        _dsn(action="failed", status="5.1.1")
        .replace(b"message/delivery-status", b"message/global-delivery-status")
        .replace(b"a@client.fr", "séverine@société.fr".encode())
    )
    (bounce,) = parse_message(raw).classification.bounces
    assert (bounce.recipient, bounce.status, bounce.permanent) == ("séverine@société.fr", "5.1.1", True)


def _dsn(action: str, status: str, more: str = "") -> bytes:
    return f"""Return-Path: <>
From: MAILER-DAEMON@mail.ateliers-durand.fr (Mail Delivery System)
To: relances@ateliers-durand.fr
Date: Tue, 1 Dec 2026 09:00:07 +0100
Message-ID: <dsn@mail.ateliers-durand.fr>
Subject: Delivery Status Notification
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="r"

--r
Content-Type: text/plain

Delivery report.

--r
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.ateliers-durand.fr

Final-Recipient: rfc822; a@client.fr
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} no such user
{more}
--r
Content-Type: text/rfc822-headers

From: relances@ateliers-durand.fr
Message-ID: <sent@ateliers-durand.fr>

--r--
""".encode()


# --- text bounces and their supporting evidence --------------------------------------------------


def test_c9_gmail_text_bounce_without_a_report_part() -> None:
    raw = _mail(
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nTo: facturation@ateliers-durand.fr\n"
        "Date: Tue, 1 Dec 2026 09:00:07 +0100\nMessage-ID: <g@mx.google.com>\nSubject: Delivery Status Notification (Failure)",
        "** Address not found **\n\n"
        "Your message wasn't delivered to roussel.c@gmail.com because the address couldn't be found.\n\n"
        "The response was:\n\n550 5.1.1 The email account that you tried to reach does not exist.\n",
    )
    c = parse_message(raw).classification
    assert c.kind == "bounce" and "(From: mailer-daemon@googlemail.com)" in c.evidence
    assert [(b.recipient, b.status, b.reporter, b.permanent) for b in c.bounces] == [
        ("roussel.c@gmail.com", "5.1.1", "gmail", True)
    ]


def test_c9_postfix_text_bounce_without_a_report_part() -> None:
    raw = _mail(
        "Return-Path: <>\nFrom: MAILER-DAEMON@mail.ateliers-durand.fr\nTo: relances@ateliers-durand.fr\n"
        "Date: Tue, 1 Dec 2026 09:00:07 +0100\nSubject: Undelivered Mail Returned to Sender",
        "This is the mail system at host mail.ateliers-durand.fr.\n\n"
        "<gestion@client.fr>: host mx.client.fr[192.0.2.1] said: 552 5.2.2\n    <gestion@client.fr>: Mailbox full\n",
    )
    (bounce,) = parse_message(raw).classification.bounces
    assert (bounce.recipient, bounce.status, bounce.category, bounce.reporter) == (
        "gestion@client.fr",
        "5.2.2",
        "mailbox_full",
        "postfix-text",
    )


def test_c9_failure_words_from_a_person_are_not_a_bounce() -> None:
    # A customer writing the words of an NDR, from an ordinary address: no null sender, no daemon.
    raw = _mail(HEADERS, "Bonjour,\n\nVotre message n'a pas pu être remis à notre comptable, il est absent.\n")
    assert parse_message(raw).classification.kind == "reply"


def test_c9_postmaster_alone_is_not_a_bounce() -> None:
    raw = _mail(HEADERS.replace("compta@", "postmaster@"), "Bonjour,\n\nL'adresse de M. Lambert a changé.\n")
    assert parse_message(raw).classification.kind == "reply"


# --- auto-replies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "evidence"),
    [
        ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-generated"),
        ("Precedence: bulk", "Precedence: bulk"),
        ("X-Autorespond: Out of office", "X-Autorespond"),
    ],
)
def test_auto_reply_headers(extra: str, evidence: str) -> None:
    c = parse_message(_mail(HEADERS + "\n" + extra)).classification
    assert c.kind == "auto_reply" and evidence in c.evidence


@pytest.mark.parametrize("subject", ["Absence du bureau", "Out of Office: Relance", "Automatic reply: Relance", "Auto: Relance"])
def test_auto_reply_subjects(subject: str) -> None:
    c = parse_message(_mail(HEADERS.replace("Subject: Re: Relance", f"Subject: {subject}"))).classification
    assert c.kind == "auto_reply" and c.evidence == f"Subject: {subject}"


@pytest.mark.parametrize(
    "extra",
    ["Auto-Submitted: no", "X-Auto-Response-Suppress: All", "Subject2: x"],
)
def test_person_mail_with_harmless_headers_is_a_reply(extra: str) -> None:
    raw = _mail(HEADERS.replace("Subject: Re: Relance", "Subject: RE: Absence de règlement") + "\n" + extra)
    assert parse_message(raw).classification == Classification("reply", "no bounce or auto-reply marker")


# --- ids -------------------------------------------------------------------------------------------


def test_r5_referenced_ids_in_reply_to_then_references_newest_first_then_originals() -> None:
    raw = _dsn(action="failed", status="5.1.1").replace(
        b"Subject: Delivery", b"In-Reply-To: <c@x.fr>\nReferences: <a@x.fr>\n <b@x.fr> <c@x.fr>\nSubject: Delivery"
    )
    parsed = parse_message(raw)
    assert parsed.in_reply_to == ("<c@x.fr>",)
    assert parsed.references == ("<a@x.fr>", "<b@x.fr>", "<c@x.fr>")
    assert parsed.referenced_ids == ("<c@x.fr>", "<b@x.fr>", "<a@x.fr>", "<sent@ateliers-durand.fr>")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" <Abc.123@Ateliers-Durand.fr> ", "<Abc.123@Ateliers-Durand.fr>"),
        ("<a@b> (Jean's message of Monday)", "<a@b>"),
        ("abc@x.fr", "<abc@x.fr>"),
        ("< spaced@x.fr >", "<spaced@x.fr>"),
        ("", None),
        ("no id here", None),
    ],
)
def test_normalise_message_id(value: str, expected: str | None) -> None:
    assert normalise_message_id(value) == expected


def test_addresses_are_lower_cased_and_envelope_headers_collected() -> None:
    raw = _mail(
        """Return-Path: <Compta@Menuiserie-Lambert.fr>
Delivered-To: Relances@ateliers-durand.fr
X-Original-To: billing@ateliers-durand.fr
From: Julien Lambert <compta@menuiserie-lambert.fr>
To: "Durand, service compta" <RELANCES@ateliers-durand.fr>
Cc: a@b.fr, c@d.fr
Date: Mon, 30 Nov 2026 10:12:38 +0100
Message-ID: <test@menuiserie-lambert.fr>"""
    )
    parsed = parse_message(raw)
    assert parsed.return_path == "compta@menuiserie-lambert.fr"
    assert parsed.to == ("relances@ateliers-durand.fr",) and parsed.cc == ("a@b.fr", "c@d.fr")
    assert parsed.delivered_to == ("relances@ateliers-durand.fr", "billing@ateliers-durand.fr")
    assert (parsed.from_address, parsed.from_name) == ("compta@menuiserie-lambert.fr", "Julien Lambert")


# --- decoding without trusting the message -----------------------------------------------------


def test_encoded_words_split_inside_a_character_are_joined() -> None:
    # "é" is C3 A9 in UTF-8: one byte in each encoded word.
    raw = _mail(HEADERS.replace("Subject: Re: Relance", "Subject: =?utf-8?q?R=C3?= =?utf-8?q?=A9gl=C3=A9?= ok"))
    assert parse_message(raw).subject == "Réglé ok"


def test_latin_1_label_is_read_as_windows_1252() -> None:
    raw = (HEADERS + "\nContent-Type: text/plain; charset=iso-8859-1\n\n").encode() + "Réglé – merci".encode("cp1252")
    parsed = parse_message(raw)
    assert parsed.text == "Réglé – merci" and parsed.defects == ()


def test_a_charset_named_after_a_compressor_is_not_decompressed() -> None:
    body = zlib.compress(b"A" * 1_000_000)
    raw = (HEADERS + "\nContent-Type: text/plain; charset=zlib\nContent-Transfer-Encoding: base64\n\n").encode()
    parsed = parse_message(raw + base64.encodebytes(body))
    assert len(parsed.text) == len(body)
    assert any("charset zlib" in d for d in parsed.defects)


def test_missing_boundary_is_repaired_not_refused() -> None:
    raw = _mail(HEADERS + '\nContent-Type: multipart/mixed; boundary="never"', "Bonjour, le virement est parti.\n")
    parsed = parse_message(raw)
    assert "le virement est parti" in parsed.text
    assert any("boundary" in d for d in parsed.defects)


@pytest.mark.parametrize("raw", [b"", b" \r\n\t\n", b"\n\nFrom: a@b.fr\n", b"Bonjour,\nvoici\n"])
def test_not_an_email_is_refused(raw: bytes) -> None:
    with pytest.raises(UnparseableMessageError):
        parse_message(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.builds(
            lambda head, body: head + b"\n\n" + body,
            st.sampled_from([p.read_bytes().split(b"\n\n", 1)[0] for p in sorted(MAIL.glob("*.eml")) if p.stat().st_size]),
            st.binary(max_size=2000),
        ),
        st.lists(
            st.sampled_from(
                [
                    b"From: ",
                    b"a@b.fr",
                    b"\n",
                    b"\r\n",
                    b"=?utf-8?b?",
                    b"?=",
                    b"Content-Type: multipart/",
                    b"report",
                    b"mixed; boundary=x",
                    b"\n--x\n",
                    b"--x--",
                    b"message/delivery-status",
                    b"message/rfc822",
                    b"charset=",
                    b"\xff\xc3",
                    b"Content-Transfer-Encoding: base64",
                    b"Status: 5.1.1",
                    b"\n\n",
                ]
            ),
            max_size=60,
        ).map(b"".join),
    )
)
def test_parse_message_raises_nothing_but_unparseable(raw: bytes) -> None:
    try:
        parsed = parse_message(raw)
    except UnparseableMessageError as error:
        assert str(error)
    else:
        assert parsed.classification.kind in ("reply", "auto_reply", "bounce", "complaint")
        assert parsed.size == len(raw)


# --- the reply's text: the fast path gives the library's answer ------------------------------------

_REPLY_TEXTS = [
    "Bonjour,\n\nLe virement est parti.\n",
    "Hello,\n\nPaid today.\n\nOn Mon, Nov 30, 2026 at 8:30 AM Ateliers Durand <relances@ateliers-durand.fr>\nwrote:\n> Bonjour\n",
    "Merci.\n\nLe lun. 30 nov. 2026 à 08:30, Ateliers Durand <relances@ateliers-durand.fr> a écrit :\n> Bonjour\n",
    "OK pour moi.\n\n-----Original Message-----\nFrom: Ateliers Durand\nSent: Monday\nTo: x\nSubject: Relance\n\nBonjour\n",
    "Réglé.\n\nDe : Ateliers Durand\nEnvoyé : lundi 30 novembre 2026 08:30\nÀ : compta\nObjet : Relance\n\nBonjour\n",
    "Date: demain\nSubject: sans objet\n\nun texte qui cite From: et To: au milieu d'une ligne\n",
    "From: Ateliers Durand\nSent: Monday\nTo: compta\n\nUn transfert sans un mot avant.\n",
    "> cité seulement\n> rien d'autre\n",
    "Vu.\n\n________________________________\nFrom: Ateliers Durand <relances@ateliers-durand.fr>\nSent: Monday\n",
    "ligne 1\nOn second thought\nwrote: rien\n",
]


@pytest.mark.parametrize(
    "text",
    _REPLY_TEXTS + [parse_message((MAIL / name).read_bytes()).text for name in _names("reply_text_contains")],
)
def test_r3_fast_reply_reader_gives_the_librarys_answer(text: str) -> None:
    assert reply._read(text) == reply.read_with_library(text)


_REPLY_LINES = [
    "Bonjour,", "", "> cité", "On Mon, Nov 30, 2026 at 8:30 AM X wrote:", "On Mon,", "On", "x wrote:", "wrote:", "> wrote:",
    "Le lun. 30 nov. 2026 à 08:30, X a écrit :", "Le", "a écrit :", "From: X", "Sent: lundi", "To: y", "Subject: z", "Cc: a",
    "De : X", "Envoyé : lundi", "À : y", "Objet : z", "*From:* X", "> > From: x", "-----Original Message-----", "_" * 40,
    "Cordialement,", "Best regards", "-- ", "Jean", "Date: demain", "Écrit par moi",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_REPLY_LINES), min_size=1, max_size=16).map("\n".join))
def test_r3_fast_reply_reader_agrees_with_the_library_on_any_text(text: str) -> None:
    assert reply._read(text) == reply.read_with_library(text)


_ADDRESS_PIECES = [
    "Julien Lambert ", "<", ">", "compta@menuiserie-lambert.fr", "a@b.fr", " (Mail Delivery System)", ", ", '"Durand, compta" ',
    "(", ")", ";", ":", "MAILER-DAEMON", " ", "=?utf-8?q?R=C3=A9gis?= ", "\\", "@", ".", "x", "é", "[1.2.3.4]", "J. ", "'",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_ADDRESS_PIECES), min_size=1, max_size=10).map("".join))
def test_fast_address_reading_agrees_with_email_utils(text: str) -> None:
    fast = headers._simple_addresses(text)
    if fast is None:  # not a usual shape: email.utils reads it, and nothing raises
        assert all(addr == addr.lower() for _, addr in headers.addresses([text]))
    else:
        expected = [(" ".join(name.split()), addr) for name, addr in getaddresses([text])]
        assert [(" ".join(name.split()), addr) for name, addr in fast] == expected
