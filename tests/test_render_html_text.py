"""The plain-text alternative (render/html_text.py) against the converter it replaced.

html_text.py caches what a tag or a text run means and post-processes with plain string
operations instead of a regex per marker, for speed; its output must not change (the
rendered emails are snapshot-tested). ``html_text_reference.py`` is the previous converter,
kept verbatim: both must agree on the example templates' output and on generated HTML full
of the awkward cases (hidden and preformatted elements, entities, stray and unclosed tags,
repeated attributes, tabs and runs of blanks next to the line markers).
"""

from __future__ import annotations

import random
from datetime import date

import pytest

from dunningops.reconcile.objects import desired_objects
from dunningops.render import Renderer
from dunningops.render.context import EmailContext, InvoiceData
from dunningops.render.html_text import html_to_text
from dunningops.spec import load_config
from html_text_reference import html_to_text as reference

_PIECES = [
    "<p>", "</p>", "<P CLASS='x'>", "<br>", "<br/>", "<BR />", "<div>", "</div>", "</DIV>",
    '<div style="display:none; max-height:0">', '<span style="DISPLAY : none">', "</span>", "<span>",
    '<div style="white-space:pre-line">', '<td style="white-space: pre">', "<pre>", "</pre>",
    "<table>", "</table>", "<tr>", "</tr>", "<td>", "</td>", "<th>", "</th>", "<td class='hide-sm'></td>",
    "<ul>", "</ul>", "<ol>", "</ol>", "<li>", "</li>", "<h1>", "</h1>", "<hr>", "<hr/>",
    '<a href="https://pay.example/1?a=1&amp;b=2">', "<a href='mailto:x@y.fr'>", '<a href="#top">', "<a>", "</a>",
    '<a href="https://d.example/f.pdf" href="https://other.example">', "<a href=https://bare.example/x>",
    "<head>", "</head>", "<title>", "</title>", "<style>", "</style>", "<script>", "</script>",
    "<template>", "</template>", "<!-- a comment -->", "<!-- unclosed", "<!DOCTYPE html>", "<?xml x?>",
    '<img src="x.png" alt="a > b">', "<div/>", '<div style="display:none"/>', "<b title=\"it's\">", "</b>",
    "<section>", "</section>", "<center>", "<dd>", "<dt>", "<blockquote>", "</blockquote>",
    "<", "< p>", "<a ", "<1>", "</>", "</ p>", '<p class="x', "'", '"', ">", "=",
    "Bonjour", "Julie", "1 200,00\xa0€", "&nbsp;", "&amp;", "&lt;b&gt;", "&#13;", "&#10;", "&eacute;", "&bogus;",
    " ", "  ", "\t", "\n", "\r\n", "\n\n  \t", " \x0c ", "https://docs.example/f.pdf", "x@y.fr", "=?utf-8?q?x?=",
]


def _html(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(size))


@pytest.mark.parametrize("seed", range(40))
def test_html_to_text_matches_the_previous_converter_on_generated_html(seed):
    rng = random.Random(seed)
    for size in (1, 3, 10, 40, 200):
        html = _html(rng, size)
        assert html_to_text(html) == reference(html), html


def test_html_to_text_matches_the_previous_converter_on_the_example_html_templates(example_html_emails):
    for html in example_html_emails:
        assert html_to_text(html) == reference(html)


def test_html_to_text_long_tags_and_texts_are_converted_without_the_caches():
    # Past the cached lengths (untrusted output is not kept): the same conversion.
    style = "color:red; " * 40
    html = f'<p style="{style}">{"mot " * 100}</p><div style="{style} display:none">caché</div><p>fin</p>'
    assert html_to_text(html) == reference(html) == ("mot " * 100).strip() + "\n\nfin\n"


@pytest.fixture
def example_html_emails(config_dir):
    objects = desired_objects(load_config(config_dir))
    templates = {k.split(".", 1)[1]: v for k, v in objects.items() if k.startswith("template.")}
    company = objects["settings"]["company"]
    renderer = Renderer(templates, company=company, plain_text=False)
    invoices = [InvoiceData(number=f"FA-{n}", due_date=date(2026, 6, n), amount_cents=123456 * n, outstanding_cents=100 * n,
                            currency="EUR", issue_date=date(2026, 5, n),
                            document_url=f"https://f.example/{n}.pdf" if n % 2 else None,
                            days_overdue=30 * n) for n in range(1, 6)]
    found = []
    for template_id, template in templates.items():
        if template.get("design") != "html":
            continue
        for language in template["locales"]:
            for contact in ({"name": "Julie Martin", "email": "j@x.fr"}, {"name": None, "email": "j@x.fr"}):
                ctx = EmailContext(company=company, customer={"name": "Établissements <Roux> & fils", "external_id": "C1"},
                                   contact=contact, invoices=invoices, sender={"name": "Compta", "email": "c@x.fr"},
                                   signature="Le service\nComptabilité", today=date(2026, 11, 19), locale=language)
                found.append(renderer.render(template_id, language, ctx).html)
    assert found
    return found


# Without a comment, html_to_text splits the text at '<' and works each piece out once (cached):
# these pieces stress that shortcut, where a '>' does not end a tag (quoted values, a lone '<').
_NO_COMMENT = [p for p in _PIECES if "<!--" not in p] + [
    '<a title="x>y" href="/q">', "<td title='a>b'>", '<a href="x', "<br >", "<p\n class=x>", "<TD>", "</Td>",
    "<a href='https://x.example/?q=\"'>", "</a >", "<li>", "</li>", "<ol><li>un<li>deux</ol>", "<p>a < b</p>",
    '<div style="white-space:pre">\n  a\tb  \n</div>', "\t\t", " \t ", "<!x>", "<?y", "<!", "a>b",
]


@pytest.mark.parametrize("seed", range(60))
def test_html_to_text_matches_the_previous_converter_without_comments(seed):
    rng = random.Random(seed)
    for size in (1, 3, 10, 40, 200):
        html = "".join(rng.choice(_NO_COMMENT) for _ in range(size))
        assert html_to_text(html) == reference(html), html
        assert html_to_text(html) == reference(html), html  # again, from the caches


def test_html_to_text_is_the_same_after_its_caches_are_emptied(monkeypatch):
    from dunningops.render import html_text

    monkeypatch.setattr(html_text, "_CACHED_PIECES", 8)  # emptied every few pieces
    rng = random.Random(7)
    for _ in range(50):
        html = "".join(rng.choice(_NO_COMMENT) for _ in range(60))
        assert html_to_text(html) == reference(html), html


def test_html_to_text_with_a_comment_anywhere_is_the_same(example_html_emails):
    for html in example_html_emails:
        middle = html.index("<table")
        for commented in (html[:middle] + "<!-- a <b>comment</b> -->" + html[middle:], html + "<!-- unclosed <p>"):
            assert html_to_text(commented) == reference(commented)
