"""The shortcuts rendering takes for speed give what Jinja's own way gives.

``BoundedEnvironment.getattr`` reads a template object's field as an item at once, and
``environment.render`` runs a template without rebuilding its globals per call: both must
return, refuse and report exactly as the sandbox and ``Template.render`` do. ``escape_text``
(what autoescaped templates and the blocks escape values with) and ``text_to_html`` (the whole
text escaped and linked at once) must give the very text they replace.
"""

from __future__ import annotations

import random

import pytest
from jinja2 import UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup, escape

from dunningops.render.environment import compile_template, environment, render
from dunningops.render.escaping import escape_text
from dunningops.render.layout import _PARAGRAPHS, text_html, text_to_html
from dunningops.render.variables import Vars

_OBJECTS = {
    "vars": Vars("invoices[0]", {"number": "F-1", "items": "a field named like a dict method", "_path": "x", "count": 3}),
    "dict": {"number": "F-2", "get": "shadowed", "__class__": "an item", "keys": 1},
    "list": [1, 2],
    "text": "abc",
}
_NAMES = ("number", "items", "get", "keys", "count", "values", "_path", "__class__", "__init__", "missing", "upper", "mro",
          "format", "fromkeys")


@pytest.mark.parametrize("autoescape", [False, True])
@pytest.mark.parametrize("kind", sorted(_OBJECTS))
@pytest.mark.parametrize("name", _NAMES)
def test_getattr_shortcut_gives_what_the_sandbox_gives(autoescape, kind, name):
    env = environment(autoescape)
    obj = _OBJECTS[kind]
    ours = env.getattr(obj, name)
    theirs = ImmutableSandboxedEnvironment.getattr(env, obj, name)
    if isinstance(theirs, env.undefined):
        assert isinstance(ours, env.undefined)
        assert ours._undefined_message == theirs._undefined_message
        assert ours._undefined_exception is theirs._undefined_exception
    else:
        assert ours == theirs


def test_a_template_object_field_that_is_a_dict_method_name_stays_the_method():
    # As in Jinja: the attribute wins over the item of the same name.
    template = compile_template(environment(False), "{{ invoice.items is callable }} {{ invoice.number }}", "<t:fr:body>")
    assert render(template, {"invoice": _OBJECTS["vars"]}) == "True F-1"


def test_render_matches_template_render_and_keeps_globals_and_errors():
    env = environment(False)
    template = compile_template(env, "{{ customer.name }} {{ range(3) | list }} {% set x = 2 %}{{ x }}", "<t:fr:body>")
    variables = {"customer": Vars("customer", {"name": "Julie"})}
    assert render(template, variables) == template.render(variables) == "Julie [0, 1, 2] 2"
    assert variables == {"customer": {"name": "Julie"}}  # the caller's variables are not written to

    broken = compile_template(env, "line 1\n{{ customer.nom }}", "<t:fr:body>")
    with pytest.raises(UndefinedError, match=r"^customer\.nom is undefined$") as caught:
        render(broken, variables)
    # Jinja's traceback rewriting still points at the template's line (how RenderError finds it).
    frames = [tb for tb in _walk(caught.value.__traceback__) if tb.tb_frame.f_code.co_filename == "<t:fr:body>"]
    assert frames and frames[-1].tb_lineno == 2

    with pytest.raises(SecurityError):
        render(compile_template(env, "{{ customer.__class__.__mro__ }}", "<t:fr:body>"), variables)


def _walk(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


class _Html:
    def __html__(self):
        return "<b>déjà</b>"


class _Text(str):
    pass


_VALUES = ["", "plain", "1\u202f892,00\xa0€", "a & b", "<b>", "l'été", 'say "hi"', "&amp;", Markup("<i>safe</i>"),
           _Text("<sub>"), 42, 3.5, None, _Html()]


@pytest.mark.parametrize("value", _VALUES, ids=repr)
def test_escape_text_is_the_text_of_markupsafe_escape(value):
    assert str(escape_text(value)) == str(escape(value))
    if value.__class__ is not str:
        assert escape_text(value).__class__ is Markup  # anything but a plain str: markupsafe's own answer


_AUTOESCAPED = [
    "{{ a }} {{ b }} {{ n }} {{ m }} {{ h }}",
    "{% set x %}{{ a }}<hr>{{ b }}{% endset %}{{ x }} {{ x | length }} {{ x ~ a }}",
    "{% macro row(v) %}<td>{{ v }}</td>{% endmacro %}{{ row(a) }}{{ row(b) }}{{ row(m) }}",
    "{% macro box() %}<div>{{ caller() }}</div>{% endmacro %}{% call box() %}{{ b }}{% endcall %}",
    "{% autoescape false %}{{ b }}{% endautoescape %} {{ b | safe }} {{ b | e }} {{ b | upper }}",
    "{% for v in [a, b, m] %}{{ loop.index }}:{{ v }} {% endfor %}{{ [a, b] | join(', ') }}",
]


@pytest.mark.parametrize("source", _AUTOESCAPED)
def test_autoescaped_templates_write_what_jinja_writes(source):
    # compile_template swaps the compiled code's ``escape`` for escape_text: the same text.
    variables = {"a": "Hélène", "b": "<Roux> & fils 'SA'", "n": 12, "m": Markup("<em>x</em>"), "h": _Html()}
    env = environment(True)
    ours = render(compile_template(env, source, "<t:fr:body>"), variables)
    theirs = ImmutableSandboxedEnvironment(autoescape=True).from_string(source).render(variables)
    assert ours == theirs


def _text_to_html_before(text):
    # text_to_html as it was: each paragraph escaped and linked on its own.
    return "\n".join(f'<p style="margin:0 0 16px;">{text_html(p)}</p>' for p in _PARAGRAPHS.split(text.strip()) if p.strip())


_TEXT_PIECES = ["mot", "é", " ", "\n", "\n\n", "\t", "\n \t\n", "https://x.example/a?b=1&c=2", "https://y.example/z).",
                "<b>", "&", '"', "'", "http://", ".", ")", "\n\n\n  ", "\xa0", "\r\n", "(https://p.example/x)", ","]


@pytest.mark.parametrize("seed", range(20))
def test_text_to_html_escapes_and_links_the_whole_text_as_each_paragraph(seed):
    rng = random.Random(seed)
    for size in (0, 1, 5, 20, 80):
        text = "".join(rng.choice(_TEXT_PIECES) for _ in range(size))
        assert text_to_html(text) == _text_to_html_before(text), text


def test_template_vars_shortcuts_give_the_values_of_the_long_way():
    from datetime import date

    from dunningops.render.context import EmailContext, InvoiceData
    from dunningops.render.formatting import money
    from dunningops.render.variables import FIELDS, template_vars

    invoices = [
        InvoiceData(number="F-1", due_date=date(2026, 6, 1), amount_cents=120000, outstanding_cents=120000, currency="EUR"),
        InvoiceData(number="F-2", due_date=date(2026, 6, 2), amount_cents=120000, outstanding_cents=84000, currency="CHF"),
    ]
    for incident, payment in ((None, None), ({}, {})):
        ctx = EmailContext(company={}, customer={}, contact={}, invoices=invoices, sender={}, signature="",
                           today=date(2026, 11, 19), locale="fr_CH", incident=incident, payment=payment)
        tvars = template_vars(ctx)
        # No incident or payment: every documented field there, None, as for any other absent value.
        assert tvars["incident"] == dict.fromkeys(FIELDS["incident"]) and tvars["incident"]._path == "incident"
        assert tvars["payment"] == dict.fromkeys(FIELDS["payment"]) and tvars["payment"]._path == "payment"
        # An unpaid invoice's outstanding is its amount's text; a part-paid one's is its own.
        first, second = tvars["invoices"]
        assert first["outstanding"] == first["amount"] == money(120000, "EUR", "fr_CH")
        assert (second["amount"], second["outstanding"]) == (money(120000, "CHF", "fr_CH"), money(84000, "CHF", "fr_CH"))


def test_constant_block_fields_render_as_their_templates(config_dir, monkeypatch):
    # Block fields without a variable are rendered once, at compile time (blocks.constant_field):
    # the emails are those of every field rendered per email.
    from datetime import date

    from dunningops.reconcile.objects import desired_objects
    from dunningops.render import Renderer, renderer
    from dunningops.render.context import EmailContext, InvoiceData
    from dunningops.spec import load_config

    objects = desired_objects(load_config(config_dir))
    templates = {k.split(".", 1)[1]: v for k, v in objects.items() if k.startswith("template.")}
    company = objects["settings"]["company"]
    invoices = [InvoiceData(number="F-1", due_date=date(2026, 6, 1), amount_cents=120000, outstanding_cents=84000,
                            currency="EUR", document_url="https://f.example/1.pdf", days_overdue=12)]
    ctx = EmailContext(company=company, customer={"name": "Roux & fils <SA>", "external_id": "C1"},
                       contact={"name": "Julie", "email": "j@x.fr"}, invoices=invoices,
                       sender={"name": "Compta", "email": "c@x.fr"}, signature="", today=date(2026, 11, 19), locale="fr_FR")
    blocks = [(t, lang) for t, v in templates.items() if v.get("design") == "blocks" for lang in v["locales"]]
    assert blocks
    fast = Renderer(templates, company=company)
    emails = [fast.render(t, lang, ctx) for t, lang in blocks]
    assert any(isinstance(f, str) for t, lang in blocks for b in fast.compiled(t, lang).blocks for f in b.fields.values())
    monkeypatch.setattr(renderer, "constant_field", lambda source, template: template)
    slow = Renderer(templates, company=company)
    assert [slow.render(t, lang, ctx) for t, lang in blocks] == emails
    assert all(not isinstance(f, str) for t, lang in blocks for b in slow.compiled(t, lang).blocks for f in b.fields.values())
