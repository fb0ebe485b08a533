"""Rendering reminders (T2, T7, A7): the example templates, tags, strictness, sandbox, escaping, checks.

The snapshots of every example template, in French and English, are what a
reviewer reads: a change to a template or to the renderer shows up there.
"""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import date
from pathlib import Path

import pytest
from babel.numbers import format_currency

from dunningops.reconcile.objects import desired_objects
from dunningops.render import (
    TAGS,
    VARIABLES,
    EmailContext,
    InvoiceData,
    RenderError,
    Renderer,
    check_blocks,
    check_template,
    html_to_text,
    template_vars_text,
)
from dunningops.render import renderer as renderer_module
from dunningops.render.formatting import long_date, money, money_by_currency
from dunningops.spec import load_config

LOCALES = {"fr": "fr_FR", "en": "en_GB"}
COMPANY = {"name": "Acme SAS", "logo_url": "https://acme.example/logo.png", "brand_color": "#123456",
           "country": "FR", "currency": "EUR"}


@pytest.fixture(scope="module")
def example(config_dir: Path) -> tuple[dict[str, dict], dict]:
    """The example config's templates in the store's shape, and its company settings."""
    objects = desired_objects(load_config(config_dir))
    templates = {addr.split(".", 1)[1]: fields for addr, fields in objects.items() if addr.startswith("template.")}
    return templates, objects["settings"]["company"]


def _context(locale: str = "fr_FR", *, customer: dict | None = None, contact: dict | None = None,
             invoices: list[InvoiceData] | None = None, signature: str = "Le service Comptabilité clients\nAteliers Durand SAS",
             company: dict | None = None) -> EmailContext:
    """A fixed context: two invoices (the second partly paid), a contact with a name, a portal."""
    return EmailContext(
        company=company or {"name": "Ateliers Durand SAS", "logo_url": "https://www.ateliers-durand.fr/static/logo-ateliers-durand.png",
                            "brand_color": "#0b4f6c", "country": "FR", "currency": "EUR"},
        customer=customer or {"name": "Boulangerie Martin SARL", "external_id": "C-1042",
                              "portal_url": "https://pay.ateliers-durand.fr/c/C-1042", "address": "12 rue de la Paix\n75002 Paris"},
        contact=contact or {"name": "Julie Martin", "email": "julie.martin@boulangerie-martin.fr"},
        invoices=invoices if invoices is not None else [
            InvoiceData("F-2026-0142", date(2026, 9, 15), 120000, 120000, "EUR", date(2026, 8, 16),
                        "https://docs.ateliers-durand.fr/F-2026-0142.pdf", 20),
            InvoiceData("F-2026-0177", date(2026, 10, 1), 108050, 84000, "EUR", date(2026, 9, 1),
                        "https://docs.ateliers-durand.fr/F-2026-0177.pdf", 4),
        ],
        sender={"name": "Ateliers Durand – Comptabilité clients", "email": "comptabilite@ateliers-durand.fr"},
        signature=signature,
        today=date(2026, 10, 5),
        locale=locale,
        incident={"reference": "INC-0012", "observations": "Facture F-2026-0142 contestée :\nlivraison incomplète (2 palettes sur 3).",
                  "state": "closed", "opened_on": date(2026, 9, 20), "closed_on": date(2026, 10, 5),
                  "invoice_number": "F-2026-0142"},
        payment={"reference": "PAY-2026-0087", "amount_cents": 84000, "currency": "EUR", "paid_on": date(2026, 10, 4),
                 "invoice_number": "F-2026-0177", "outstanding_cents": 24050},
        rating_url="https://relances.ateliers-durand.fr/l/r/TOKEN",
    )


def _one(design: str, body: str, subject: str = "Relance – {{ customer.name }}", language: str = "fr") -> dict[str, dict]:
    return {"t": {"name": "T", "design": design, "locales": {language: {"subject": subject, "body": body, "body_file": "t"}}}}


def _render(design: str, body: str, ctx: EmailContext | None = None, company: dict | None = None, **kw):
    return Renderer(_one(design, body, **kw), company or COMPANY).render("t", kw.get("language", "fr"), ctx or _context())


# --- the example templates ------------------------------------------------------------------


def _example_ids(config_dir: Path = Path(__file__).resolve().parent.parent / "config") -> list[tuple[str, str]]:
    state = load_config(config_dir)
    return [(tid, lang) for tid in sorted(state.templates) for lang in ("fr", "en")]


@pytest.mark.parametrize(("template_id", "language"), _example_ids())
def test_t2_example_template_snapshot(example, template_id, language, snapshot):
    templates, company = example
    email = Renderer(templates, company).render(template_id, language, _context(LOCALES[language]))
    assert "\n" not in email.subject
    assert email.text.strip() and email.html.strip()
    assert f"Subject: {email.subject}\n\n--- text ---\n{email.text}\n--- html ---\n{email.html}" == snapshot


def test_t2_example_templates_pass_check_template(example):
    templates, _ = example
    for tid, template in templates.items():
        for lang, loc in template["locales"].items():
            assert check_template(loc["body"], template["design"]) == [], (tid, lang)
            assert check_template(loc["subject"], "subject") == [], (tid, lang)


def test_t2_example_templates_render_with_one_invoice_and_no_contact_name(example):
    templates, company = example
    ctx = _context(contact={"name": None, "email": "compta@client.fr"}, customer={"name": "Client", "external_id": "C1"},
                   invoices=[InvoiceData("F-1", date(2026, 9, 1), 5000, 5000, "EUR")])
    renderer = Renderer(templates, company)
    for tid in templates:
        for lang in ("fr", "en"):
            email = renderer.render(tid, lang, ctx)
            assert "Julie" not in email.text and ("Madame, Monsieur" in email.text or "Dear Sir or Madam" in email.text
                                                  or "Bonjour," in email.text or "Hello," in email.text), (tid, lang)


# --- designs ----------------------------------------------------------------------------------


def test_t2_text_design_wrapped_in_branded_layout():
    email = _render("text", "Bonjour {{ contact.name }},\n\nVoir https://x.example/f.pdf.\nMerci.\n\n{{ signature }}")
    assert email.text == "Bonjour Julie Martin,\n\nVoir https://x.example/f.pdf.\nMerci.\n\nLe service Comptabilité clients\nAteliers Durand SAS\n"
    html = email.html
    assert html.startswith("<!DOCTYPE html>") and '<html lang="fr">' in html
    assert '<img src="https://acme.example/logo.png" alt="Acme SAS"' in html  # logo from the company settings
    assert 'bgcolor="#123456"' in html and "background:#123456" in html  # header bar in the brand colour
    assert '<p style="margin:0 0 16px;">Bonjour Julie Martin,</p>' in html  # paragraphs kept
    assert 'Voir <a href="https://x.example/f.pdf">https://x.example/f.pdf</a>.<br>\nMerci.' in html  # line breaks kept
    assert "Comptabilité clients<br>\nAteliers Durand SAS" in html
    assert "<title>Relance – Boulangerie Martin SARL</title>" in html
    assert html.count("Acme SAS") == 2  # the logo's alt text and the footer
    assert "@media only screen and (max-width: 620px)" in html  # responsive


def test_t2_text_design_without_logo_shows_company_name_readable_on_light_brand():
    email = _render("text", "Bonjour", company={"name": "Jaune & Cie", "brand_color": "#ffee00"})
    assert "<img" not in email.html
    assert '<span style="color:#1d2733; font-size:20px; font-weight:bold;">Jaune &amp; Cie</span>' in email.html


def test_t2_html_design_rendered_as_is_with_a_text_alternative():
    body = '<html><head><style>p { color: red; }</style></head><body><p>Bonjour {{ contact.name }},</p>' \
           '<p>Total : <strong>{{ totals.outstanding }}</strong></p><a href="{{ customer.portal_url }}">Payer</a></body></html>'
    email = _render("html", body)
    assert email.html == body.replace("{{ contact.name }}", "Julie Martin").replace(
        "{{ totals.outstanding }}", "2\u202f040,00\xa0€").replace("{{ customer.portal_url }}", "https://pay.ateliers-durand.fr/c/C-1042")
    assert email.text == "Bonjour Julie Martin,\n\nTotal : 2\u202f040,00\xa0€\n\nPayer (https://pay.ateliers-durand.fr/c/C-1042)\n"


BLOCKS = """\
- type: heading
  text: "Relance – {{ customer.name }}"
- type: paragraph
  text: |-
    Bonjour {{ contact.name }},
    merci de régler {{ totals.outstanding }}.
- type: invoice_table
- type: button
  text: Régler en ligne
  url: "{{ customer.portal_url }}"
- type: divider
- type: signature
"""


def test_t2_blocks_design_renders_table_html_and_text_from_the_same_blocks():
    email = _render("blocks", BLOCKS)
    html, text = email.html, email.text
    assert '<h1 style="margin:0; font-family:Arial, Helvetica, sans-serif; font-size:22px; line-height:1.3; color:#123456;">' \
           "Relance – Boulangerie Martin SARL</h1>" in html
    assert "Bonjour Julie Martin,<br>\nmerci de régler 2\u202f040,00\xa0€." in html
    # T7: reference, due date, days overdue, amount, outstanding, link to the document.
    assert '<th align="left" style="padding:8px; border-bottom:2px solid #123456;' in html
    assert ">F-2026-0177</td>" in html and ">1 octobre 2026</td>" in html and ">1\u202f080,50\xa0€</td>" in html
    assert ">840,00\xa0€</td>" in html and '<a href="https://docs.ateliers-durand.fr/F-2026-0177.pdf">Voir</a>' in html
    assert ">Total restant dû</td>" in html
    assert 'bgcolor="#123456"' in html and 'href="https://pay.ateliers-durand.fr/c/C-1042" target="_blank"' in html
    assert html.count("<table") == 5  # the layout (2), the blocks, the invoice table, the button
    assert text == (
        "Relance – Boulangerie Martin SARL\n\n"
        "Bonjour Julie Martin,\nmerci de régler 2\u202f040,00\xa0€.\n\n"
        "• Facture F-2026-0142 – échéance : 15 septembre 2026 (20 jours de retard)\n"
        "  Montant : 1\u202f200,00\xa0€ – reste dû : 1\u202f200,00\xa0€\n"
        "  Voir : https://docs.ateliers-durand.fr/F-2026-0142.pdf\n"
        "• Facture F-2026-0177 – échéance : 1 octobre 2026 (4 jours de retard)\n"
        "  Montant : 1\u202f080,50\xa0€ – reste dû : 840,00\xa0€\n"
        "  Voir : https://docs.ateliers-durand.fr/F-2026-0177.pdf\n"
        "Total restant dû : 2\u202f040,00\xa0€\n\n"
        "Régler en ligne : https://pay.ateliers-durand.fr/c/C-1042\n\n"
        + "-" * 24 + "\n\n"
        "Le service Comptabilité clients\nAteliers Durand SAS\n"
    )


def test_t2_blocks_button_left_out_without_a_link_and_refused_with_a_bad_one():
    ctx = _context(customer={"name": "Client", "external_id": "C1"})  # no portal
    email = _render("blocks", BLOCKS, ctx)
    assert "Régler en ligne" not in email.html and "Régler en ligne" not in email.text
    with pytest.raises(RenderError, match=r"body line 1: block 1 \(button\): link 'javascript:alert\(1\)' must start with"):
        _render("blocks", "- type: button\n  text: Go\n  url: 'javascript:alert(1)'")


def test_a7_signature_block_falls_back_to_sender_and_company():
    email = _render("blocks", "- type: signature", _context(signature=""), language="en")
    assert email.text == "Ateliers Durand – Comptabilité clients\nAcme SAS\n"


def test_subject_is_one_stripped_line():
    email = _render("text", "x", subject="  Relance\n{% if invoices|length > 1 %} – {{ invoices|length }} factures{% endif %}\n ")
    assert email.subject == "Relance – 2 factures"


# --- formatting and variables -------------------------------------------------------------------


def test_amounts_and_dates_read_naturally_in_each_locale():
    assert money(120000, "EUR", "fr_FR") == "1\u202f200,00\xa0€"
    assert money(120000, "EUR", "en_GB") == "€1,200.00"
    assert money(-500, "EUR", "fr_FR") == "-5,00\xa0€"
    assert long_date(date(2026, 10, 1), "fr_FR") == "1 octobre 2026"
    assert long_date(date(2026, 10, 1), "en_GB") == "1 October 2026"
    assert money_by_currency([(1000, "EUR"), (2000, "USD"), (500, "EUR")], "fr_FR") == "15,00\xa0€ + 20,00\xa0$US"


def test_fast_amounts_match_babel():
    rng = random.Random(7)
    for locale in ("fr_FR", "en_GB", "de_DE", "de_CH", "nl_NL", "es_ES", "it_IT", "pl_PL", "hi_IN", "ar_EG", "ja_JP", "fr_CH"):
        for currency in ("EUR", "USD", "GBP", "CHF", "JPY"):
            for cents in (0, 7, 99, 100000, rng.randrange(10**10)):
                assert money(cents, currency, locale) == format_currency(cents / 100, currency, locale=locale), (locale, currency, cents)


def test_totals_sum_per_currency():
    invoices = [InvoiceData("A", date(2026, 1, 1), 1000, 1000, "EUR"), InvoiceData("B", date(2026, 1, 1), 2000, 1500, "USD")]
    email = _render("text", "{{ totals.outstanding }} / {{ totals.amount }} / {{ totals.count }}", _context("en_GB", invoices=invoices))
    assert email.text == "€10.00 + US$15.00 / €10.00 + US$20.00 / 2\n"


def test_every_documented_variable_renders():
    body = "\n".join("{{ " + (v.name.replace("invoice.", "invoices[0].") if v.name != "invoices" else "invoices|length") + " }}"
                     for v in VARIABLES)
    assert check_template(body.replace("invoices[0].", "(invoices|first)."), "text") == []
    text = _render("text", body).text
    assert "Boulangerie Martin SARL" in text and "16 août 2026" in text and "5 octobre 2026" in text


def test_optional_values_print_nothing():
    ctx = _context(contact={"name": None, "email": "x@y.fr"}, customer={"name": "C", "external_id": "1"},
                   invoices=[InvoiceData("F", date(2026, 1, 1), 1, 1, "EUR")])
    email = _render("text", "[{{ contact.name }}][{{ customer.portal_url }}][{{ invoices[0].document_url }}]", ctx)
    assert email.text == "[][][]\n"


def test_template_vars_text(snapshot):
    text = template_vars_text()
    for v in VARIABLES:
        assert v.name in text
    for tag in TAGS:
        assert tag in text
    assert "@Observations@" in text and "@widgetvaluation@" in text
    assert text == snapshot


# --- T2 tags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tag", "expected"), [
    ("@CUSTOMERNAME@", "Boulangerie Martin SARL"),
    ("@CONTACTNAME@", "Julie Martin"),
    ("@COMPANYNAME@", "Ateliers Durand SAS"),
    ("@TOTALDUE@", "2\u202f040,00\xa0€"),
    ("@SENDERNAME@", "Ateliers Durand – Comptabilité clients"),
    ("@SIGNATURE@", "Le service Comptabilité clients\nAteliers Durand SAS"),
    ("@TODAY@", "5 octobre 2026"),
])
def test_t2_tag_replaced(tag, expected):
    email = _render("text", f"<{tag}>", subject=f"({tag})")
    assert email.text == f"<{expected}>\n"
    assert email.subject == f"({expected.replace(chr(10), ' ')})"  # one line; no-break spaces kept


def test_t2_invoice_list_tag_in_text_and_html():
    text = _render("text", "Factures :\n@INVOICELIST@\nMerci.").text
    assert text == (
        "Factures :\n"
        "• F-2026-0142 – 15 septembre 2026 – 1\u202f200,00\xa0€\n  https://docs.ateliers-durand.fr/F-2026-0142.pdf\n"
        "• F-2026-0177 – 1 octobre 2026 – 840,00\xa0€\n  https://docs.ateliers-durand.fr/F-2026-0177.pdf\nMerci.\n"
    )
    html = _render("html", "<div>@INVOICELIST@</div>").html
    assert html == (
        '<div><ul style="margin:0 0 16px; padding-left:20px;">'
        '<li style="margin:0 0 4px;"><a href="https://docs.ateliers-durand.fr/F-2026-0142.pdf">F-2026-0142</a> – 15 septembre 2026 – 1\u202f200,00\xa0€</li>'
        '<li style="margin:0 0 4px;"><a href="https://docs.ateliers-durand.fr/F-2026-0177.pdf">F-2026-0177</a> – 1 octobre 2026 – 840,00\xa0€</li>'
        "</ul></div>"
    )


def test_t2_unknown_tag_is_an_error():
    body = "Bonjour,\n\nVoici @CUSTNAME@."
    assert check_template(body, "text") == [(3, "unknown tag @CUSTNAME@; did you mean @CUSTOMERNAME@? (see `dunningops template vars`)")]
    with pytest.raises(RenderError, match=r"template 't' \(fr\), body line 3: unknown tag @CUSTNAME@"):
        _render("text", body)


def test_t8_observations_tag_inserts_the_incident_description():
    email = _render("text", "Objet :\n@Observations@", subject="Demande @Observations@")
    assert email.text == "Objet :\nFacture F-2026-0142 contestée :\nlivraison incomplète (2 palettes sur 3).\n"
    assert "\n" not in email.subject
    ctx = dataclasses.replace(_context(), incident={"observations": "<b>x</b> & y"})
    html = _render("html", "<p>@Observations@</p>", ctx).html
    assert html == "<p>&lt;b&gt;x&lt;/b&gt; &amp; y</p>"


def test_t8_rating_widget_is_five_links_in_html_and_one_in_text():
    html = _render("html", "<div>@widgetvaluation@</div>").html
    links = re.findall(r'href="([^"]+)"', html)
    assert links == [f"https://relances.ateliers-durand.fr/l/r/TOKEN?score={n}" for n in range(1, 6)]
    assert "Comment avons-nous traité votre demande ?" in html
    text = _render("text", "@widgetvaluation@").text
    assert text == "Comment avons-nous traité votre demande ? Donner votre avis : https://relances.ateliers-durand.fr/l/r/TOKEN\n"
    english = _render("html", "@widgetvaluation@", ctx=_context("en_GB"), language="en").html
    assert "How did we handle your request?" in english and "5 out of 5" in english


def test_t8_rating_widget_prints_nothing_without_an_incident_to_rate():
    ctx = dataclasses.replace(_context(), rating_url=None)
    assert _render("text", "[@widgetvaluation@]", ctx).text == "[]\n"
    assert _render("html", "[@widgetvaluation@]", ctx).html == "[]"


def test_t2_tags_are_not_email_addresses_comments_or_code():
    body = ("Écrire à compta@acme.fr ou a@b.fr, @ media, user@@host, x@ABC@y.\n"
            "{# @CUSTOMERNAME@ in a comment stays a comment #}{{ '@NOTATAG@' }} @CUSTOMERNAME@.")
    assert check_template(body, "text") == []
    assert _render("text", body).text == ("Écrire à compta@acme.fr ou a@b.fr, @ media, user@@host, x@ABC@y.\n"
                                          "@NOTATAG@ Boulangerie Martin SARL.\n")


# --- strictness and safety ----------------------------------------------------------------------


def test_undefined_variable_names_template_language_and_variable():
    with pytest.raises(RenderError) as info:
        _render("text", "Bonjour,\n{{ customer.portal }}")
    err = info.value
    assert (err.template, err.language, err.part, err.line, err.variable) == ("t", "fr", "body", 2, "customer.portal")
    assert str(err) == "template 't' (fr), body line 2: customer.portal is undefined (the email is not sent with a hole in it)"
    with pytest.raises(RenderError, match=r"subject line 1: nobody is undefined"):
        _render("text", "x", subject="{{ nobody }}")
    with pytest.raises(RenderError, match=r"body \(block 2 text\) line 3: contact.nom is undefined"):
        _render("blocks", "- type: divider\n- type: paragraph\n  text: >-\n    Bonjour {{ contact.nom }}")


def test_sandbox_blocks_attribute_access():
    for body in ("{{ ''.__class__ }}", "{{ customer._path }}", "{{ invoices.__class__.__mro__ }}"):
        with pytest.raises(RenderError, match="not allowed in a template: access to attribute"):
            _render("html", body)


def test_context_cannot_be_changed_by_a_template():
    with pytest.raises(RenderError, match="not allowed in a template"):
        _render("text", "{{ customer.update({'name': 'x'}) }}")


def test_template_bugs_are_render_errors_with_their_line():
    with pytest.raises(RenderError, match=r"body line 3: ZeroDivisionError: division by zero"):
        _render("text", "a\nb\n{{ 1 / 0 }}")
    with pytest.raises(RenderError, match=r"body line 2: template syntax: "):
        _render("text", "a\n{% if %}")


def test_autoescape_in_html_raw_in_text_and_subject():
    ctx = _context(customer={"name": "<script>alert(1)</script> & Co", "external_id": "X"})
    for design, body in (("html", "<p>{{ customer.name }}</p>"), ("text", "{{ customer.name }}"),
                         ("blocks", "- type: paragraph\n  text: '{{ customer.name }}'")):
        email = _render(design, body, ctx)
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in email.html, design
        assert "<script>" not in email.html, design
        assert email.text == "<script>alert(1)</script> & Co\n", design
        assert email.subject == "Relance – <script>alert(1)</script> & Co", design


def test_missing_template_or_language():
    renderer = Renderer(_one("text", "x"), COMPANY)
    with pytest.raises(RenderError, match=r"^no template 'nope'$"):
        renderer.render("nope", "fr", _context())
    with pytest.raises(RenderError, match=r"^template 't': no 'de' version \(it has: fr\)$"):
        renderer.render("t", "de", _context())


def test_templates_compiled_once_per_run(monkeypatch):
    calls = []
    real = renderer_module.compile_template
    monkeypatch.setattr(renderer_module, "compile_template", lambda *a: calls.append(a[2]) or real(*a))
    renderer = Renderer(_one("blocks", BLOCKS), COMPANY)
    for _ in range(3):
        renderer.render("t", "fr", _context())
    assert sorted(calls) == sorted(["<t:fr:subject>", "<t:fr:block 1 text>", "<t:fr:block 2 text>",
                                    "<t:fr:block 4 text>", "<t:fr:block 4 url>"])
    broken = Renderer(_one("text", "{% if %}"), COMPANY)
    for _ in range(2):  # a broken template is not recompiled for every customer either
        with pytest.raises(RenderError):
            broken.render("t", "fr", _context())
    assert len(calls) == 5 + 2  # its subject, and its body once


# --- html → text ----------------------------------------------------------------------------------


def test_html_to_text():
    html = """<!DOCTYPE html><html><head><title>T</title><style>p { color: red }</style></head><body>
      <div style="display:none; max-height:0">preheader</div>
      <h1>Relance</h1>
      <p>Bonjour   Julie,<br>voici le
         <a href="https://pay.example/1?a=1&amp;b=2">lien de paiement</a> et
         <a href="https://docs.example/f.pdf">https://docs.example/f.pdf</a>.</p>
      <ul><li>une</li><li>deux</li></ul>
      <ol><li>premier</li><li>second</li></ol>
      <table><tr><th>Facture</th><th class="hide">Retard</th><th>Montant</th></tr>
             <tr><td>F-1</td><td></td><td>10,00&nbsp;€</td></tr></table>
      <div style="white-space:pre-line">Le service
Comptabilité</div>
      <p>a<br><br>b</p><script>alert(1)</script><a href="mailto:x@y.fr">nous écrire</a>
    </body></html>"""
    assert html_to_text(html) == (
        "Relance\n\n"
        "Bonjour Julie,\nvoici le lien de paiement (https://pay.example/1?a=1&b=2) et https://docs.example/f.pdf.\n\n"
        "- une\n- deux\n\n"
        "1. premier\n2. second\n\n"
        "Facture  Retard  Montant\nF-1  10,00\xa0€\n\n"
        "Le service\nComptabilité\n\n"
        "a\n\nb\n\n"
        "nous écrire (x@y.fr)\n"
    )


# --- validate-time checks -----------------------------------------------------------------------------


def test_check_template_finds_undeclared_variable_with_its_line():
    source = "Bonjour {{ contact.name }},\n\n{{ customr.name }} doit {{ totals.outstanding }}.\n{{ sender.nom }}"
    assert check_template(source, "text") == [
        (3, "unknown variable customr; did you mean customer? (see `dunningops template vars`)"),
        (4, "unknown field sender.nom; did you mean sender.name? (sender has: email, name)"),
    ]
    assert check_template(source, "text", known_only=False) == []


def test_check_template_accepts_set_and_loop_variables():
    source = ('{%- set brand = company.brand_color | default("#0b4f6c") -%}\n'
              "{% for invoice in invoices|sort(attribute='due_date') %}{{ invoice.number }} {{ loop.index }} {{ brand }}{% endfor %}\n"
              "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}\n"
              "{% macro line(x) %}{{ x }}{% endmacro %}{{ line(customer.name) }} {{ (invoices|first).due_date }}")
    assert check_template(source, "html") == []


def test_check_template_unknown_invoice_field_and_invoice_outside_a_loop():
    source = "{% for inv in invoices %}\n{{ inv.amout }}\n{% endfor %}\n{{ invoice.number }}"
    assert check_template(source, "text") == [
        (2, "unknown field inv.amout; did you mean inv.amount? (invoice has: amount, currency, days_overdue, "
            "document_url, due_date, issue_date, number, outstanding)"),
        (4, "invoice is only defined inside {% for invoice in invoices %}…{% endfor %}"),
    ]


def test_check_template_syntax_error_line():
    assert check_template("Bonjour\n\n{% if contact.name %}\n{{ contact.name }", "text") == [
        (4, "template syntax: unexpected '}'")]
    assert check_template("{% for x in invoices %}", "html") == [
        (1, "template syntax: Unexpected end of template. Jinja was looking for the following tags: 'endfor' or 'else'. "
            "The innermost block that needs to be closed is 'for'.")]


def test_check_blocks():
    text = """\
- type: heading
  text: Relance
  colour: red
- type: buton
- type: button
  text: "{{ customer.portl }}"
- just text
- type: paragraph
  text: 3
- type: divider
  text: no
"""
    assert check_blocks(text) == [
        (3, "block 1 (heading): unknown field 'colour'; a heading block accepts text"),
        (4, "block 2: unknown block type 'buton'; did you mean 'button'? "
            "(expected one of: heading, paragraph, invoice_table, button, signature, divider)"),
        (5, "block 3 (button): missing field 'url'"),
        (6, "block 3 (button) text: unknown field customer.portl; did you mean customer.portal_url? "
            "(customer has: address, external_id, name, portal_url)"),
        (7, "block 4: a block is a mapping with a `type` (heading, paragraph, invoice_table, button, signature, divider)"),
        (9, "block 5 (paragraph): 'text' must be text, not int"),
        (11, "block 6 (divider): unknown field 'text'; a divider block takes no fields"),
    ]
    # The message is the YAML parser's (libyaml's where present); the place is what matters.
    ((line, message),) = check_blocks("- type: [")
    assert line in (1, 2) and message.startswith("invalid YAML: ")
    assert check_blocks("type: paragraph") == [(1, "a blocks body is a non-empty list of blocks (- type: paragraph …)")]
    assert check_template("- type: paragraph\n  text: '{% if %}'", "blocks") == [
        (2, "block 1 (paragraph) text: template syntax: Expected an expression, got 'end of statement block'")]
