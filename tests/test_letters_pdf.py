"""Letters as PDF: a letter step's to-do becomes an A4 PDF (WeasyPrint) with the company's letterhead
and the customer's postal address, read back here with pypdf; made once and kept; downloadable from
the CLI and the console (over the daemon's real HTTP server); and never a way for a template to
read a file or reach the network. The store on SQLite and PostgreSQL.

The send cycle makes the letter to-dos for real (``run_send``), from a v1 config with a letter step
in French and English; the ledger brings the postal addresses (its new customer columns).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import http.server
import logging
import re
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email import policy
from email.parser import BytesParser
from io import BytesIO
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from console_helpers import PASSWORDS, client, signed_in
from cycle_helpers import paris
from dunningops.app import App
from dunningops.dunning import letters
from dunningops.dunning.cycle import run_send
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.todos import add as add_todo
from dunningops.errors import InvalidInputError, NotFoundError, UnavailableError
from dunningops.ledger.importer import import_file
from dunningops.ledger.issues import LedgerImportError
from dunningops.ledger.items import ItemsError, import_items
from dunningops.reconcile.apply import apply_config
from dunningops.render import pdf as pdf_module
from dunningops.render.layout import shell, text_to_html
from dunningops.render.pdf import MAX_PAGES, LetterTooLargeError, letter_body, letter_pdf
from dunningops.spec import load_config
from dunningops.store.engine import Store, open_store
from dunningops.store.schema import AliasRow, CustomerRow, TodoRow
from dunningops.store.schema_notices import TodoDocumentRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.web import create_app

MM = 72 / 25.4  # points in a millimetre
APPLIED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday
RUN_AT = paris(2026, 11, 23)  # Monday 08:30 in Paris: the letter step is due for both customers
CUSTOMERS = "external_id,name,country,locale,currency,account_manager,plan,address_line1,address_line2,postal_code,city\n"
LEDGER = {
    "customers": CUSTOMERS
    + "C1,Boulangerie Martin SARL,FR,fr_FR,EUR,,,12 rue de la Paix,Bâtiment B,75002,Paris\n"
    + "C2,Müller GmbH,DE,en_GB,EUR,,,Hauptstraße 5,,10115,Berlin\n"
    + "C3,Café du Port,FR,fr_FR,EUR,,,,,,\n",
    "contacts": "customer_external_id,email,name,phone,job,functions,primary\n"
    "C1,paul@martin.fr,Paul Martin,,,payer,true\nC2,hans@mueller.de,Hans Müller,,,payer,true\n"
    "C3,jean@cafeduport.fr,Jean Dupont,+33 4 91 00 00 00,,payer,true\n",
    "invoices": "external_id,customer_external_id,number,issue_date,due_date,amount,outstanding,currency,document_url,status\n"
    "I1,C1,FA-2026-0101,2026-09-15,2026-10-15,1200.00,,EUR,,\n"
    "I2,C1,FA-2026-0102,2026-09-20,2026-10-20,840.50,,EUR,,\n"
    "I3,C2,FA-2026-0203,2026-09-10,2026-10-10,99.90,,EUR,,\n"
    "I4,C3,FA-2026-0304,2026-11-01,2026-11-18,50.00,,EUR,,\n",
}
COMPANY_ADDRESS = ["5 avenue de l'Opéra", "75001 Paris", "France"]
LEGAL = "SAS au capital de 10 000 € – RCS Paris 123 456 789"
LETTER_FR = """<style>table.invoices { width: 100%; } .amount { text-align: right; }</style>
<p>{% if contact.name %}Bonjour {{ contact.name }},{% else %}Madame, Monsieur,{% endif %}</p>
<p>Sauf erreur de notre part, les factures suivantes demeurent impayées :</p>
<table class="invoices"><tr><th>Facture</th><th>Échéance</th><th class="amount">Reste dû</th></tr>
{% for invoice in invoices %}<tr><td>{{ invoice.number }}</td><td>{{ invoice.due_date }}</td>
<td class="amount">{{ invoice.outstanding }}</td></tr>
{% endfor %}</table>
<p>Nous vous mettons en demeure de nous régler {{ totals.outstanding }} sous huit jours.</p>
"""
LETTER_EN = """<p>Dear {{ contact.name or "Sir or Madam" }},</p>
<p>According to our records, the following invoices are still unpaid:</p>
<table><tr><th>Invoice</th><th>Due</th><th>Outstanding</th></tr>
{% for invoice in invoices %}<tr><td>{{ invoice.number }}</td><td>{{ invoice.due_date }}</td>
<td>{{ invoice.outstanding }}</td></tr>
{% endfor %}</table>
<p>We hereby give you formal notice to pay {{ totals.outstanding }} within eight days.</p>
"""


# --- reading a PDF back ---------------------------------------------------------------------------


def _reader(data: bytes) -> PdfReader:
    assert data.startswith(b"%PDF-"), data[:20]
    return PdfReader(BytesIO(data))


def _text(data: bytes) -> str:
    """The PDF's text, spaces normalised (babel's amounts hold no-break and narrow no-break spaces)."""
    text = "\n".join(page.extract_text() for page in _reader(data).pages)
    return re.sub(r"[ \u00a0\u202f]+", " ", text)


def _positions(data: bytes) -> dict[str, tuple[float, float]]:
    """Each line of page 1 → (x from the left, y from the top) of where it starts, in millimetres."""
    page = _reader(data).pages[0]
    height = float(page.mediabox.height)
    found: dict[str, tuple[float, float]] = {}

    def visit(text, cm, tm, font, size):
        text = re.sub(r"[ \u00a0\u202f]+", " ", text).strip()
        if text and text not in found:
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            found[text] = (x / MM, (height - y) / MM)

    page.extract_text(visitor_text=visit)
    return found


def _assert_a4(data: bytes) -> None:
    for page in _reader(data).pages:
        assert abs(float(page.mediabox.width) - 595) <= 1 and abs(float(page.mediabox.height) - 842) <= 1


def _images(data: bytes) -> int:
    return sum(len(page.images) for page in _reader(data).pages)


def _attached(data: bytes) -> list[bytes]:
    """The files embedded by the pages' file attachment annotations (``<a rel="attachment">``)."""
    found = []
    for page in _reader(data).pages:
        for annotation in page.get("/Annots") or []:
            annotation = annotation.get_object()
            if annotation.get("/Subtype") == "/FileAttachment":
                found.append(annotation["/FS"]["/EF"]["/F"].get_object().get_data())
    return found


# --- render/pdf.py on its own -----------------------------------------------------------------------

COMPANY = {
    "name": "Ateliers Durand SAS",
    "address": ["14 rue des Tanneurs", "69002 Lyon", "France"],
    "legal": "SAS au capital de 250 000 € – RCS Lyon 812 345 678",
    "brand_color": "#0b4f6c",
    "logo_url": "https://www.ateliers-durand.fr/static/logo.png",
    "country": "FR",
}
MUELLER = {
    "name": "Müller GmbH",
    "address_line1": "Hauptstraße 5",
    "address_line2": "Gebäude B",
    "postal_code": "10115",
    "city": "Berlin",
    "country": "DE",
}
BODY = (
    "<html><head><title>not printed</title></head><body><p>Bonjour,</p><table>"
    "<tr><td>FA-2026-0142</td><td>1\u202f200,00\u00a0€</td></tr><tr><td>FA-2026-0143</td><td>840,50\u00a0€</td></tr>"
    "</table></body></html>"
)


@pytest.mark.parametrize(
    ("language", "locale", "subject_line", "dated", "country"),
    [
        ("fr", "fr_FR", "Objet : Mise en demeure", "Lyon, le 14 décembre 2026", "ALLEMAGNE"),
        ("en", "en_GB", "Subject: Mise en demeure", "Lyon, 14 December 2026", "GERMANY"),
    ],
)
def test_letter_is_an_a4_page_with_letterhead_window_address_date_subject_body_and_legal(
    language, locale, subject_line, dated, country
):
    data = letter_pdf(
        company=COMPANY,
        customer=MUELLER,
        subject="Mise en demeure",
        body_html=BODY,
        date=date(2026, 12, 14),
        language=language,
        locale=locale,
    )
    _assert_a4(data)
    text = _text(data)
    for line in (
        *COMPANY["address"],
        "Müller GmbH",
        "Hauptstraße 5",
        "Gebäude B",
        "10115 Berlin",
        country,
        dated,
        subject_line,
        "Bonjour,",
        "FA-2026-0142",
        "1 200,00 €",
        "FA-2026-0143",
        "840,50 €",
        "Ateliers Durand SAS · SAS au capital de 250 000 € – RCS Lyon 812 345 678",
    ):
        assert line in text, (line, text)
    assert "not printed" not in text  # the document's <title> is not its content
    at = _positions(data)
    # The recipient where a DL window envelope shows it (100-200 mm from the left, 50-95 mm from the top).
    for line in ("Müller GmbH", "Hauptstraße 5", "10115 Berlin", country):
        x, y = at[line]
        assert 100 <= x <= 200 and 50 <= y <= 95, (line, x, y)
    # The letterhead at the top left, outside the window; the letter below it; the legal line at the foot.
    assert at["Ateliers Durand SAS"][0] < 100 and at["Ateliers Durand SAS"][1] < 50
    assert at["Bonjour,"][1] > 95
    legal = next(t for t in at if "RCS Lyon" in t)
    assert at[legal][1] > 270
    assert _images(data) == 0  # the logo is a URL: never fetched, so not in the letter


def test_an_embedded_logo_is_printed_and_a_template_cannot_change_the_page_size():
    png = base64.b64encode(_png()).decode()
    body = (
        "<html><head><style>@page { size: A3 landscape !important; margin: 0 !important }</style></head>"
        "<body><p>Hello</p></body></html>"
    )
    data = letter_pdf(
        company={**COMPANY, "logo_url": f"data:image/png;base64,{png}"},
        customer=MUELLER,
        subject="S",
        body_html=body,
        date=date(2026, 12, 14),
        language="en",
    )
    _assert_a4(data)
    assert _images(data) == 1  # the data: logo is used (the fetcher takes data: URIs)


def test_a_customer_without_address_gets_the_name_alone_and_the_same_country_is_not_written():
    data = letter_pdf(
        company=COMPANY,
        customer={"name": "Café du Port", "country": "FR"},
        subject="S",
        body_html="<p>x</p>",
        date=date(2026, 12, 14),
        language="fr",
    )
    text = _text(data)
    assert "Café du Port" in text and "FRANCE" not in text
    lyon = {**MUELLER, "country": "FR", "postal_code": "69001", "city": "Lyon"}
    assert pdf_module.address_lines(lyon, from_country="FR", locale="fr_FR") == ["Hauptstraße 5", "Gebäude B", "69001 Lyon"]
    london = {"address_line1": "10 Downing Street", "postal_code": "SW1A 2AA", "city": "London", "country": "GB"}
    assert pdf_module.address_lines(london, from_country="FR", locale="en_GB")[-2:] == ["London SW1A 2AA", "UNITED KINGDOM"]


def test_letter_body_takes_the_layout_cell_else_the_body_else_the_fragment_without_what_runs():
    layout = shell({"name": "Acme SAS"}, "fr").wrap("Sujet", "<p>Le contenu</p>").replace("Acme SAS</td>", "EMAIL-FOOTER</td>")
    content, css = letter_body(layout)
    assert content.strip() == "<p>Le contenu</p>" and css == ""
    page = (
        '<html><head><style>p { color: red }</style><script>alert(1)</script></head><body onload="x()">'
        '<p onclick="x()" class="a">Un &amp; deux</p><iframe src="http://x/"><p>inside</p></iframe><script>evil()</script>'
        '<link rel="stylesheet" href="http://x/s.css"><base href="file:///etc/"></body></html>'
    )
    content, css = letter_body(page)
    assert content == '<p class="a">Un &amp; deux</p>' and css == "p { color: red }"
    content, _ = letter_body("<p>Bonjour @CUSTOMERNAME@,</p>\n<p>Votre facture est en retard.</p>")
    assert content == "<p>Bonjour @CUSTOMERNAME@,</p>\n<p>Votre facture est en retard.</p>"


# --- the config is untrusted input: nothing read from disk, nothing from the network ----------------------


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self):
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.end_headers()
        self.wfile.write(b"body::after { content: 'LEAKED-HTTP' }")

    def log_message(self, *args):
        pass


@pytest.fixture
def counting_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server on loopback that counts the requests it gets (and would serve CSS)."""
    hits: list[str] = []
    handler = type("Handler", (_Counting,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        thread.join(5)


def test_a_letter_template_reaches_no_file_and_no_server_and_the_pdf_is_still_made(
    counting_server, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    base, hits = counting_server
    with urllib.request.urlopen(f"{base}/probe") as answer:  # the server does count what reaches it
        assert answer.status == 200
    assert hits == ["/probe"]
    hits.clear()
    leak_css = tmp_path / "leak.css"
    leak_css.write_text("body::before { content: 'LEAKED-FILE' }")
    leak_png = tmp_path / "leak.png"
    leak_png.write_bytes(_png())
    body = f"""<html><head>
<link rel="stylesheet" href="{base}/x.css"><base href="{base}/">
<style>@import url(file://{leak_css}); @import "{base}/import.css";
@font-face {{ font-family: Leak; src: url({base}/font.woff2); }}
p {{ font-family: Leak; background: url({base}/background.png); }}</style></head>
<body>
<img src="file:///etc/hostname"><img src="file://{leak_png}"><img src="{base}/image.png"><img src="relative.png">
<p style="background-image: url(file://{leak_png})">Bonjour Madame,</p>
<svg width="10" height="10"><image href="{base}/svg.png" width="10" height="10"/></svg>
<object data="{base}/object"></object><embed src="{base}/embed"><iframe src="{base}/iframe"></iframe>
<link rel="attachment" href="file://{leak_css}"><div style="list-style-image: url({base}/bullet.png)"><ul><li>un</li></ul></div>
<a rel="attachment" href="file://{leak_css}">leak</a><a rel="attachment" href="data:text/plain,fine">note</a>
</body></html>"""
    with caplog.at_level(logging.INFO, logger="dunningops.render.pdf"):
        data = letter_pdf(company=COMPANY, customer=MUELLER, subject="S", body_html=body, date=date(2026, 12, 14), language="fr")
    assert hits == []
    text = _text(data)
    assert "Bonjour Madame," in text and "LEAKED" not in text
    assert _images(data) == 0  # neither file's image nor the server's
    assert _attached(data) == [b"fine"]  # the data: one only: the file was not read
    _assert_a4(data)
    refused = " ".join(r.getMessage() for r in caplog.records)
    assert f"file://{leak_css}" in refused and "file:///etc/hostname" in refused and f"{base}/image.png" in refused


def test_work_is_bounded_a_huge_table_too_many_pages_or_too_deep_is_refused_with_one_line():
    def make(body: str) -> bytes:
        return letter_pdf(company=COMPANY, customer=MUELLER, subject="S", body_html=body, date=date(2026, 12, 14), language="en")

    rows = "".join(f"<tr><td>FA-{i}</td><td>1 200,00 €</td></tr>" for i in range(3_000))
    with pytest.raises(LetterTooLargeError, match=r"^the letter is too long to print: 9,001 HTML elements \(at most 8,000\)$"):
        make(f"<table>{rows}</table>")
    with pytest.raises(LetterTooLargeError, match=r"characters of HTML \(at most 200,000\)$"):
        make("<p>" + "x" * 250_000 + "</p>")
    with pytest.raises(LetterTooLargeError, match=rf"^the letter cannot be printed: it would be longer than {MAX_PAGES} pages$"):
        make('<p style="break-after: page">page</p>' * (MAX_PAGES + 10))
    with pytest.raises(LetterTooLargeError, match="nests too deeply"):
        make("<div>" * 6_000 + "x" + "</div>" * 6_000)
    assert len(_reader(make('<p style="break-after: page">page</p>' * 3)).pages) == 3  # bounds reset for the next letter


def test_without_pango_a_pdf_is_one_clear_line(monkeypatch: pytest.MonkeyPatch):
    real_import = builtins.__import__

    def no_pango(name, *args, **kwargs):
        if name == "weasyprint" or name.startswith("weasyprint."):
            raise OSError("cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pango)
    with pytest.raises(UnavailableError) as raised:
        letter_pdf(company=COMPANY, customer=MUELLER, subject="S", body_html="<p>x</p>", date=date(2026, 12, 14), language="fr")
    assert str(raised.value) == "letters as PDF need Pango: apt-get install libpango-1.0-0 libpangoft2-1.0-0"


# --- the ledger's postal address columns ----------------------------------------------------------------


def _write(tmp: Path, kind: str, body: str) -> Path:
    path = tmp / f"{kind}.csv"
    path.write_text(body, encoding="utf-8")
    return path


def _addresses(store: Store) -> dict[str, tuple]:
    c = CustomerRow.__table__.c
    with store.session() as s:
        rows = s.execute(select(c.external_id, c.address_line1, c.address_line2, c.postal_code, c.city).order_by(c.external_id))
        return {r[0]: tuple(r[1:]) for r in rows}


@pytest.fixture
def letter_config(v1: Path) -> Path:
    """v1 with the company's letterhead and a formal-notice letter step (30 days after the due date) in French and English."""
    settings = v1 / "dunningops.yaml"
    text = settings.read_text()
    old = "  company: {name: Acme SAS, country: FR, timezone: Europe/Paris, locale: fr_FR, currency: EUR}\n"
    assert old in text
    settings.write_text(
        text.replace(
            old,
            "  company:\n    name: Acme SAS\n    country: FR\n    timezone: Europe/Paris\n    locale: fr_FR\n    currency: EUR\n"
            f'    address: ["{COMPANY_ADDRESS[0]}", "{COMPANY_ADDRESS[1]}", {COMPANY_ADDRESS[2]}]\n    legal: "{LEGAL}"\n',
        )
    )
    plans = v1 / "plans.yaml"
    text = plans.read_text()
    old = "    reply_to: ar@acme.fr\n"
    assert old in text
    text = text.replace(old, old + "    entry: by_age\n")
    old = "      - {id: call, at: 2w, action: call, assignee: member.bob}\n"
    assert old in text
    step = "      - {id: formal-notice, at: 30d, action: letter, assignee: member.alice, template: formal-notice}\n"
    text = text.replace(old, old + step)
    text += (
        "  - id: formal-notice\n    name: Formal notice (letter)\n    design: html\n    locales:\n"
        '      fr: {subject: "Mise en demeure de payer", body: formal-notice.fr.html}\n'
        '      en: {subject: "Formal notice to pay", body: formal-notice.en.html}\n'
    )
    plans.write_text(text)
    (v1 / "formal-notice.fr.html").write_text(LETTER_FR)
    (v1 / "formal-notice.en.html").write_text(LETTER_EN)
    return v1


def _store(url: str, config: Path) -> Store:
    store = open_store(url)
    apply_config(store, load_config(config), now=APPLIED, actor="alice", git_commit=None)
    return store


def test_ledger_imports_the_postal_address_columns_once_and_refuses_bad_cells(
    database_url: str, letter_config: Path, tmp_path: Path
):
    store = _store(database_url, letter_config)
    try:
        path = _write(tmp_path, "customers", LEDGER["customers"])
        first = import_file(store, "customers", path, now=APPLIED)
        assert (first.added, first.changed) == (3, 0)
        assert _addresses(store) == {
            "C1": ("12 rue de la Paix", "Bâtiment B", "75002", "Paris"),
            "C2": ("Hauptstraße 5", None, "10115", "Berlin"),
            "C3": (None, None, None, None),
        }
        again = import_file(store, "customers", path, now=APPLIED)
        assert (again.added, again.changed, again.unchanged) == (0, 0, 3)  # the same file twice changes nothing
        moved = LEDGER["customers"].replace("12 rue de la Paix,Bâtiment B,75002", "3 rue du Bac,,75007")
        changed = import_file(store, "customers", _write(tmp_path, "customers", moved), now=APPLIED)
        assert (changed.added, changed.changed) == (0, 1)
        assert _addresses(store)["C1"] == ("3 rue du Bac", None, "75007", "Paris")

        bad = CUSTOMERS + 'C4,Nouveau,FR,fr_FR,EUR,,,"1 rue A\nsuite",,75001,Paris\n'
        bad += "C5,Autre,FR,fr_FR,EUR,,,,," + "9" * 33 + ",Lyon\n"
        with pytest.raises(LedgerImportError) as raised:
            import_file(store, "customers", _write(tmp_path, "customers", bad), now=APPLIED)
        assert str(raised.value).splitlines() == [
            "2 errors in 2 of 2 rows; nothing was imported:",
            "  customers.csv: row 2, column address_line1: '1 rue A\\nsuite' is not one line "
            "(no line breaks or control characters)",
            "  customers.csv: row 3, column postal_code: is longer than 32 characters",
        ]
        assert set(_addresses(store)) == {"C1", "C2", "C3"}
    finally:
        store.engine.dispose()


def test_api_customer_upserts_take_the_address_and_the_customer_shows_it(
    database_url: str, letter_config: Path, live_server, run
):
    from api_helpers import Clock, token
    from api_helpers import client as api_client

    app = App(config_dir=letter_config, database_url=database_url, env={}, clock=Clock())
    apply_config(app.store, load_config(letter_config), now=APPLIED, actor="alice", git_commit=None)
    try:
        base = live_server(create_app(app))
        item = {"external_id": "C9", "name": "Menuiserie Petit", "address_line1": "8 quai des Chartrons", "postal_code": "33000"}
        item["city"] = "Bordeaux"
        with api_client(base, token(app)) as http:
            created = http.post("/api/v1/customers", json={"items": [item]})
            assert created.status_code == 200, created.text
            assert (created.json()["created"], created.json()["updated"]) == (1, 0)
            again = http.post("/api/v1/customers", json={"items": [item]})
            assert (again.json()["created"], again.json()["updated"], again.json()["unchanged"]) == (0, 0, 1)
            shown = http.get("/api/v1/customers/C9").json()
            assert (shown["address_line1"], shown["address_line2"], shown["postal_code"], shown["city"]) == (
                "8 quai des Chartrons",
                None,
                "33000",
                "Bordeaux",
            )
            typo = http.post("/api/v1/customers", json={"items": [{**item, "adress_line1": "x"}]})
            assert typo.status_code == 422 and "did you mean 'address_line1'?" in typo.text
        with app.session() as s, pytest.raises(ItemsError) as raised:
            import_items(s, "customers", [{**item, "postal_code": "1" * 40}], now=APPLIED)
        assert raised.value.issues[0].field == "postal_code"
        shown_cli = run("customers", "show", "C9", "--config", letter_config, "--database-url", database_url)
        assert "postal address: 8 quai des Chartrons, 33000 Bordeaux\n" in shown_cli.stdout
    finally:
        app.close()


def test_reminders_get_customer_address_from_the_ledger(database_url: str, letter_config: Path, tmp_path: Path):
    (letter_config / "courtesy.fr.txt").write_text("Bonjour,\n\nAdresse : {{ customer.address }}\n")
    store = _store(database_url, letter_config)
    try:
        with store.session() as s:  # the courtesy alias may send
            s.execute(AliasRow.__table__.update().values(verified=True))
        soon = LEDGER["invoices"].splitlines()[0] + "\nI9,C1,FA-2026-0901,2026-11-01,2026-11-26,10.00,,EUR,,\n"
        for kind, body in (("customers", LEDGER["customers"]), ("contacts", LEDGER["contacts"]), ("invoices", soon)):
            import_file(store, kind, _write(tmp_path, kind, body), now=APPLIED)
        report = run_send(store, at=RUN_AT, transport_factory=lambda c: MaildirTransport(tmp_path / "outbox"))
        assert report.ok and report.sent == 1, (report.errors, [d.row() for d in report.decisions])
        files = [f for f in (tmp_path / "outbox").rglob("*") if f.is_file()]
        mails = [BytesParser(policy=policy.default).parsebytes(f.read_bytes()) for f in files]
        [mail] = [m for m in mails if "paul@martin.fr" in str(m["To"])]  # beside the aliases' confirmations
        body = mail.get_body(("plain",)).get_content()
        assert "Adresse : 12 rue de la Paix\nBâtiment B\n75002 Paris\n" in body
    finally:
        store.engine.dispose()


# --- the letter to-do's document, from a real send cycle --------------------------------------------------


def _letters_world(url: str, config: Path, tmp: Path) -> tuple[Store, dict[str, int]]:
    """The config applied, the ledger imported, the send cycle run: the letter to-dos by customer."""
    store = _store(url, config)
    for kind in ("customers", "contacts", "invoices"):
        import_file(store, kind, _write(tmp, kind, LEDGER[kind]), now=APPLIED)
    report = run_send(store, at=RUN_AT, transport_factory=lambda c: MaildirTransport(tmp / "outbox"))
    assert report.ok, report.errors
    with store.session() as s:
        rows = s.execute(
            select(CustomerRow.external_id, TodoRow.id)
            .join(CustomerRow, CustomerRow.id == TodoRow.customer_id)
            .where(TodoRow.kind == "letter")
        ).all()
    return store, {customer: todo_id for customer, todo_id in rows}


@pytest.fixture
def world(database_url: str, letter_config: Path, tmp_path: Path) -> Iterator[tuple[Store, dict[str, int]]]:
    store, todos = _letters_world(database_url, letter_config, tmp_path)
    yield store, todos
    store.engine.dispose()


def test_the_send_cycle_makes_letter_todos_whose_pdf_is_read_back_in_french_and_english(world, snapshot):
    store, todos = world
    assert set(todos) == {"C1", "C2"}  # C3's invoice is not 30 days overdue yet
    fr = letters.document(store, todos["C1"], RUN_AT)
    en = letters.document(store, todos["C2"], RUN_AT)
    assert (fr.name, en.name) == ("letter-standard-formal-notice-C1.pdf", "letter-standard-formal-notice-C2.pdf")
    for doc in (fr, en):
        _assert_a4(doc.data)
        text = _text(doc.data)
        for line in ("Acme SAS", *COMPANY_ADDRESS, f"Acme SAS · {LEGAL}"):
            assert line in text, (line, text)
    text = _text(fr.data)
    for line in (
        "Boulangerie Martin SARL",
        "12 rue de la Paix",
        "Bâtiment B",
        "75002 Paris",
        "Paris, le 23 novembre 2026",
        "Objet : Mise en demeure de payer",
        "Bonjour Paul Martin,",
        "FA-2026-0101",
        "1 200,00 €",
        "FA-2026-0102",
        "840,50 €",
        "2 040,50 €",
    ):
        assert line in text, (line, text)
    assert "FRANCE" not in text  # a letter within the country does not name it
    text = _text(en.data)
    for line in (
        "Müller GmbH",
        "Hauptstraße 5",
        "10115 Berlin",
        "GERMANY",
        "Paris, 23 November 2026",
        "Subject: Formal notice to pay",
        "Dear Hans Müller,",
        "FA-2026-0203",
        "€99.90",
    ):
        assert line in text, (line, text)
    assert {"fr": _text(fr.data), "en": _text(en.data)} == snapshot


def test_the_stored_document_is_reused_the_same_sha256_at_every_download(world, monkeypatch: pytest.MonkeyPatch):
    store, todos = world
    first = letters.document(store, todos["C1"], RUN_AT)
    # A second download never makes the letter again: it is the stored document.
    monkeypatch.setattr(letters, "letter_pdf", lambda **kwargs: pytest.fail("the letter was made again"))
    second = letters.document(store, todos["C1"], paris(2026, 11, 30))
    assert second == first
    with store.session() as s:
        rows = s.execute(select(TodoDocumentRow).where(TodoDocumentRow.todo_id == todos["C1"])).scalars().all()
        assert [(r.name, r.content_type, r.sha256, r.created_at) for r in rows] == [
            (first.name, "application/pdf", hashlib.sha256(first.data).hexdigest(), RUN_AT)
        ]
        described = letters.describe(s, todos["C1"])
    digest = hashlib.sha256(first.data).hexdigest()
    assert described == {"name": first.name, "sha256": digest, "size": len(first.data), "created_at": RUN_AT}


def test_only_a_letter_todo_has_a_document(world):
    store, _ = world
    with store.session() as s:
        call = add_todo(s, kind="call", customer_id=1, now=RUN_AT, assignee=None, payload={"phones": []})
    with pytest.raises(InvalidInputError, match=rf"^to-do #{call} is a call to-do, not a letter: it has no document$"):
        letters.document(store, call, RUN_AT)
    with pytest.raises(NotFoundError, match=r"^no to-do #999999$"):
        letters.document(store, 999_999, RUN_AT)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(TodoDocumentRow)) == 0


def test_a_text_design_letter_prints_its_paragraphs_not_the_email_layout(world):
    store, _ = world
    text = "Madame, Monsieur,\n\nNous vous prions de régler la facture FA-2026-0101.\n\nCordialement,\nAcme SAS"
    html = shell({"name": "Acme SAS"}, "fr").wrap("Rappel", text_to_html(text)).replace("Acme SAS</td>", "EMAIL-FOOTER</td>")
    with store.session() as s:
        customer_id = s.scalar(select(CustomerRow.id).where(CustomerRow.external_id == "C1"))
        payload = {"action": "letter", "template": "courtesy", "language": "fr", "subject": "Rappel", "html": html, "text": text}
        todo_id = add_todo(
            s, kind="letter", customer_id=customer_id, now=RUN_AT, assignee="alice", payload=payload, plan_id="p", step_id="s"
        )
    printed = _text(letters.document(store, todo_id, RUN_AT).data)
    assert "Nous vous prions de régler la facture FA-2026-0101." in printed and "Cordialement," in printed
    assert "EMAIL-FOOTER" not in printed


# --- the CLI ------------------------------------------------------------------------------------------------------


def test_cli_todo_letter_saves_the_pdf_refuses_to_overwrite_and_todo_show_mentions_it(
    world, run, letter_config: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot
):
    store, todos = world
    db = ("--config", letter_config, "--database-url", database_url)
    todo_id = todos["C1"]
    before = run("todo", "show", todo_id, *db)
    assert before.exit_code == 0, before.output
    assert "From:" not in before.stdout and "Subject: Mise en demeure de payer" in before.stdout
    assert before.stdout.endswith(
        f"\nDocument: not made yet; `dunningops todo letter {todo_id}` makes the letter as a PDF (A4) and saves it.\n"
    )
    out = tmp_path / "printed"
    out.mkdir()
    monkeypatch.chdir(out)
    saved = run("todo", "letter", todo_id, *db)
    assert saved.exit_code == 0, saved.output
    path = out / "letter-standard-formal-notice-C1.pdf"
    size = path.stat().st_size
    assert saved.stdout == f"Letter of to-do #{todo_id} saved to letter-standard-formal-notice-C1.pdf ({size // 1024 + 1} KB).\n"
    assert "Boulangerie Martin SARL" in _text(path.read_bytes())
    refused = run("todo", "letter", todo_id, *db)
    assert (refused.exit_code, refused.stderr) == (
        1,
        "Error: letter-standard-formal-notice-C1.pdf already exists (use --force to replace it)\n",
    )
    forced = run("todo", "letter", todo_id, "--force", "--out", out / "copy.pdf", *db)
    assert forced.exit_code == 0 and (out / "copy.pdf").read_bytes() == path.read_bytes()
    to_stdout = run("todo", "letter", todo_id, "--out", "-", *db)
    assert to_stdout.stdout_bytes == path.read_bytes()
    after = run("todo", "show", todo_id, *db)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert after.stdout.endswith(
        f"\nDocument: letter-standard-formal-notice-C1.pdf ({size // 1024 + 1} KB, made 2026-11-23 08:30 UTC, "
        f"sha256 {digest[:12]}…); save it with `dunningops todo letter {todo_id}`.\n"
    )
    with store.session() as s:
        call = add_todo(s, kind="call", customer_id=1, now=RUN_AT, assignee=None, payload={"phones": []})
    not_a_letter = run("todo", "letter", call, *db)
    assert (not_a_letter.exit_code, not_a_letter.stderr) == (
        1,
        f"Error: to-do #{call} is a call to-do, not a letter: it has no document\n",
    )
    assert run("todo", "letter", "--help").output == snapshot(name="help")


def test_cli_without_pango_says_so_in_one_line_with_exit_3(world, run, letter_config, database_url, monkeypatch, tmp_path):
    _, todos = world
    real_import = builtins.__import__

    def no_pango(name, *args, **kwargs):
        if name == "weasyprint" or name.startswith("weasyprint."):
            raise OSError("cannot load library 'libpango-1.0-0'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pango)
    monkeypatch.chdir(tmp_path)
    result = run("todo", "letter", todos["C1"], "--config", letter_config, "--database-url", database_url)
    assert (result.exit_code, result.stderr) == (
        3,
        "Error: letters as PDF need Pango: apt-get install libpango-1.0-0 libpangoft2-1.0-0\n",
    )


# --- the console, over the daemon's real HTTP server -----------------------------------------------------------------


def test_console_todo_page_offers_the_letter_and_downloads_the_same_pdf(
    world, letter_config: Path, database_url: str, live_server
):
    from dunningops.web.console.credentials import set_password

    store, todos = world
    app = App(config_dir=letter_config, database_url=database_url, env={}, clock=lambda: paris(2026, 11, 23, 10))
    try:
        with app.store.session() as s:
            set_password(s, RunConfig.from_store(s), "alice", PASSWORDS["alice"], now=paris(2026, 11, 23, 10))
        base = live_server(create_app(app))
        todo_id = todos["C2"]
        with client(base) as anonymous:
            asked = anonymous.get(f"/todos/{todo_id}/letter.pdf")
            assert asked.status_code == 303 and asked.headers["location"].startswith("/signin?next=")
        http = signed_in(base, "alice")
        try:
            page = http.get(f"/todos/{todo_id}")
            assert page.status_code == 200
            assert f'href="/todos/{todo_id}/letter.pdf"' in page.text and "Download the letter (PDF)" in page.text
            assert "To Hauptstraße 5, 10115 Berlin, ALLEMAGNE" in page.text
            got = http.get(f"/todos/{todo_id}/letter.pdf")
            assert got.status_code == 200
            assert got.headers["content-type"] == "application/pdf"
            assert got.headers["content-disposition"] == 'attachment; filename="letter-standard-formal-notice-C2.pdf"'
            assert "Müller GmbH" in _text(got.content) and "Subject: Formal notice to pay" in _text(got.content)
            again = http.get(f"/todos/{todo_id}/letter.pdf")
            assert hashlib.sha256(again.content).digest() == hashlib.sha256(got.content).digest()
            assert "letter-standard-formal-notice-C2.pdf" in http.get(f"/todos/{todo_id}").text
            customer = http.get("/customers/C1").text
            assert "12 rue de la Paix, Bâtiment B, 75002 Paris" in customer
            with store.session() as s:
                call = add_todo(s, kind="call", customer_id=1, now=RUN_AT, assignee=None, payload={"phones": []})
            wrong = http.get(f"/todos/{call}/letter.pdf")
            assert wrong.status_code == 422 and "not a letter" in wrong.text
            assert http.get("/todos/999999/letter.pdf").status_code == 404
        finally:
            http.close()
        assert letters.document(store, todo_id, RUN_AT).data == got.content
    finally:
        app.close()


def _png() -> bytes:
    """A 2 x 2 red PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
