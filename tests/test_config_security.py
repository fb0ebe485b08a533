"""The config is untrusted input: it cannot make us read outside itself, escape the sandbox, or
exhaust the process.

In a pull-request workflow the config is written by whoever opens the pull request, and planned
on a CI runner that holds secrets; the plan is posted back. So: every file the config names or
holds stays inside the config directory (symlinks followed), is a regular file of bounded size;
templates that reach for Python's internals are refused at ``validate`` with their line; and
rendering is bounded in time, size, loops and nesting, at validate where literals decide it and
at render time always.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dunningops.errors import ConfigError
from dunningops.render import Renderer, RenderError
from dunningops.render.limits import MAX_SECONDS
from dunningops.spec import load_config
from dunningops.spec.paths import MAX_BODY_BYTES
from dunningops.store import open_store
from dunningops.store.schema import TemplateRow
from test_render import _context  # the fixed context of the render tests

SECRET = "SECRET-7f3a9c-DO-NOT-LEAK"
LEDGER = Path(__file__).with_name("fixtures") / "ledger"
CLI = "import sys; from dunningops.cli import main; sys.argv[0] = 'dunningops'; main()"


def _errors(root: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(root)
    return str(info.value)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture lacks {old!r}"
    path.write_text(text.replace(old, new, 1))


def _cli(*args: object, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """The real CLI in a child process, so that a regression that hangs fails the test instead."""
    environ = {**os.environ, "DUNNINGOPS_NOW": "2026-11-23T08:30:00+00:00", **env}
    environ.pop("DUNNINGOPS_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=environ)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the config directory that would render as a template, were it read."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text(f"{SECRET}\n{{{{ contact.name }}}}\n")
    return path


def _assert_refused_everywhere(run, v1: Path, tmp_path: Path, place: str, message: str) -> None:
    """``validate`` and ``plan`` (text and markdown) fail naming ``place`` and the problem; the secret shows nowhere."""
    text = _errors(v1)
    assert f"{place}: {message}" in text, text
    assert SECRET not in text
    url = f"sqlite:///{tmp_path}/state.db"
    for args in (("validate",), ("plan", "--database-url", url), ("plan", "--database-url", url, "--format", "markdown")):
        result = run(*args, "--config", v1)
        assert result.exit_code == 1, result.output
        assert SECRET not in result.output
        assert place in result.stderr and "Traceback" not in result.output


# --- files the config names ---------------------------------------------------------------------------


def test_t2_body_with_dot_dot_outside_the_config_is_refused(run, v1: Path, secret: Path, tmp_path: Path):
    _edit(v1 / "plans.yaml", "body: courtesy.fr.txt", "body: ../outside/secret.txt")
    _assert_refused_everywhere(run, v1, tmp_path, "plans.yaml:15: templates[courtesy].locales.fr.body",
                               "body file '../outside/secret.txt' is outside the config directory")


def test_t2_body_with_an_absolute_path_is_refused(run, v1: Path, secret: Path, tmp_path: Path):
    _edit(v1 / "plans.yaml", "body: courtesy.fr.txt", f"body: {secret}")
    _assert_refused_everywhere(run, v1, tmp_path, "plans.yaml:15: templates[courtesy].locales.fr.body",
                               f"body file '{secret}' is an absolute path")


def test_t2_body_that_is_a_symlink_outside_is_refused(run, v1: Path, secret: Path, tmp_path: Path):
    (v1 / "courtesy.fr.txt").unlink()
    (v1 / "courtesy.fr.txt").symlink_to(secret)
    _assert_refused_everywhere(run, v1, tmp_path, "plans.yaml:15: templates[courtesy].locales.fr.body",
                               "body file 'courtesy.fr.txt' is a symbolic link to a file outside the config directory")


def test_t2_body_through_a_symlinked_folder_outside_is_refused(run, v1: Path, secret: Path, tmp_path: Path):
    (v1 / "shared").symlink_to(secret.parent, target_is_directory=True)
    _edit(v1 / "plans.yaml", "body: courtesy.fr.txt", "body: shared/secret.txt")
    _assert_refused_everywhere(run, v1, tmp_path, "plans.yaml:15: templates[courtesy].locales.fr.body",
                               "body file 'shared/secret.txt' is a symbolic link to a file outside the config directory")


def test_t2_body_symlink_to_a_device_is_refused_without_opening_it(run, v1: Path, tmp_path: Path):
    (v1 / "courtesy.fr.txt").unlink()
    (v1 / "courtesy.fr.txt").symlink_to("/dev/zero")
    _assert_refused_everywhere(run, v1, tmp_path, "plans.yaml:15: templates[courtesy].locales.fr.body",
                               "body file 'courtesy.fr.txt' is a symbolic link to a file outside the config directory")


def test_t2_body_that_is_a_fifo_is_refused_without_hanging(v1: Path):
    (v1 / "courtesy.fr.txt").unlink()
    os.mkfifo(v1 / "courtesy.fr.txt")  # opening it to read would wait for a writer forever
    result = _cli("validate", "--config", v1, timeout=30)
    assert result.returncode == 1
    assert result.stderr == ("Error: 1 error in the config:\n  plans.yaml:15: templates[courtesy].locales.fr.body: "
                             "body file 'courtesy.fr.txt' is not a regular file\n")


def test_t2_body_symlink_inside_the_config_is_followed(v1: Path):
    (v1 / "bodies").mkdir()
    (v1 / "courtesy.fr.txt").rename(v1 / "bodies" / "courtesy.fr.txt")
    (v1 / "courtesy.fr.txt").symlink_to(Path("bodies") / "courtesy.fr.txt")
    state = load_config(v1)
    assert state.template_bodies[("courtesy", "fr")].startswith("Bonjour {{ contact.name }}")


def test_t2_body_larger_than_the_limit_is_refused(v1: Path):
    (v1 / "courtesy.fr.txt").write_text("x" * (MAX_BODY_BYTES + 1))
    assert ("plans.yaml:15: templates[courtesy].locales.fr.body: body file 'courtesy.fr.txt' is larger than "
            "the 1 MB limit (1,000,001 bytes)") in _errors(v1)


def test_yaml_file_that_is_a_symlink_outside_is_refused(run, v1: Path, tmp_path: Path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(f"members:\n  - {{id: mallory, email: mallory@acme.fr, name: {SECRET}}}\n")
    (v1 / "team.yaml").symlink_to(outside)
    _assert_refused_everywhere(run, v1, tmp_path, "team.yaml",
                               "is a symbolic link to a file outside the config directory; it is not read")


def test_yaml_file_that_is_a_fifo_or_a_device_is_refused(v1: Path):
    os.mkfifo(v1 / "pipe.yaml")
    (v1 / "zero.yaml").symlink_to("/dev/zero")
    result = _cli("validate", "--config", v1, timeout=30)
    assert result.returncode == 1
    assert "  pipe.yaml: is not a regular file; it is not read\n" in result.stderr
    assert "  zero.yaml: is a symbolic link to a file outside the config directory; it is not read\n" in result.stderr


def test_yaml_files_in_a_symlinked_folder_outside_are_not_read(v1: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "team.yaml").write_text(f"members:\n  - {{id: mallory, email: mallory@acme.fr, name: {SECRET}}}\n")
    (v1 / "more").symlink_to(outside, target_is_directory=True)
    assert "mallory" not in load_config(v1).members


def test_fmt_neither_reads_nor_writes_a_yaml_symlink_outside(run, v1: Path, tmp_path: Path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(f"members:\n- {{name: {SECRET}, id: x, email: x@acme.fr}}\n")
    (v1 / "team.yaml").symlink_to(outside)
    result = run("fmt", "--config", v1)
    assert result.exit_code == 1 and "team.yaml: is a symbolic link to a file outside" in result.stderr
    assert outside.read_text() == f"members:\n- {{name: {SECRET}, id: x, email: x@acme.fr}}\n"


def test_non_utf8_yaml_names_the_line_and_column(v1: Path):
    (v1 / "team.yaml").write_bytes(b"members:\n  - id: zoe\n    name: Zo\xe9\n")
    assert "team.yaml:3: not valid UTF-8 (byte 0xe9 at column 13): save the file as UTF-8" in _errors(v1)


def test_t2_non_utf8_body_names_its_line(v1: Path):
    (v1 / "courtesy.fr.txt").write_bytes(b"Bonjour,\n\nVotre facture \xe9chue.\n")
    assert "courtesy.fr.txt:3: not valid UTF-8 (byte 0xe9 at column 15): save the file as UTF-8" in _errors(v1)


# --- templates that reach for Python's internals -----------------------------------------------------------

UNDERSCORE = "templates may not use names beginning with '_'"
ESCAPES = [
    ("{{ ''.__class__.__mro__ }}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ ''|attr('__class__') }}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ customer['__class__'] }}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ lipsum.__globals__ }}", f"{UNDERSCORE} (here: __globals__)"),
    ("{{ cycler.__init__.__globals__ }}", f"{UNDERSCORE} (here: __init__)"),
    ("{{ self._TemplateReference__context }}", f"{UNDERSCORE} (here: _TemplateReference__context)"),
    ("{{ range.__self__ }}", f"{UNDERSCORE} (here: __self__)"),
    ("{{ '{0.__class__}'.format(customer) }}", "templates may not use .format: join texts with ~"),
    ("{{ customer.name.format_map(customer) }}", "templates may not use .format_map"),
    ("{{ '%c%c'|format(95, 95) }}", "|format patterns may not use %(_…), %c, %r or %a"),
    ("{{ customer.name|format(1) }}", "|format takes a quoted pattern"),
    ("{{ '%s'|format('__class__') }}", f"{UNDERSCORE} (here: '__class__' given to |format)"),
    ("{{ namespace.__init__ }}", f"{UNDERSCORE} (here: __init__)"),
    ("{{ joiner.__init__ }}", f"{UNDERSCORE} (here: __init__)"),
    ("{% set x = ''.__class__ %}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ (1).__class__ }}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ config }}", "unknown variable config"),
    ("{{ request }}", "unknown variable request"),
    ("{{ lipsum(5) }}", "unknown variable lipsum"),
    ("{{ customer.mro() }}", "templates may not use Python's internals (here: mro)"),
    ("{{ customer|attr('__cla' ~ 'ss__') }}", "|attr takes a quoted name (templates may not compute the names of attributes)"),
    ("{{ customer['__cla' ~ 'ss__'] }}", "a subscript must be a number, a loop counter or a quoted name"),
    ("{% set k = '__class__' %}{{ customer[k] }}", "a subscript must be a number, a loop counter or a quoted name"),
    ("{{ invoices|map(attribute='__class__')|list }}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ invoices|map('attr', '__class__')|list }}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ invoices|sort(attribute='number.__class__') }}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ invoices|selectattr(customer.name)|list }}", "the attribute of |selectattr takes a quoted name"),
    ("{% set ns = namespace() %}{% set ns.__x = 1 %}", f"{UNDERSCORE} (here: __x)"),
    ("{{ dict(__class__=1) }}", f"{UNDERSCORE} (here: __class__)"),
    ("{{ x.gi_frame }}", "templates may not use Python's internals (here: gi_frame)"),
    ("{% include 'secret.txt' %}", "templates cannot include, import or extend other templates"),
]


@pytest.mark.parametrize(("expression", "message"), ESCAPES, ids=[e for e, _ in ESCAPES])
def test_t2_sandbox_escape_refused_at_validate_with_its_line(v1: Path, expression: str, message: str):
    (v1 / "courtesy.fr.txt").write_text(f"Bonjour {{{{ contact.name }}}},\n\n{expression}\n")
    text = _errors(v1)
    assert f"courtesy.fr.txt:3: {message}" in text, text


def test_t2_sandbox_escape_in_a_subject_names_the_yaml_line(v1: Path):
    _edit(v1 / "plans.yaml", 'subject: "Rappel : échéance proche"', "subject: \"{{ ''.__class__ }}\"")
    assert f"plans.yaml:15: templates[courtesy].locales.fr.subject: {UNDERSCORE} (here: __class__)" in _errors(v1)


def test_t2_sandbox_escape_in_a_block_names_its_line(v1: Path):
    (v1 / "notice.fr.blocks.yaml").write_text("- type: heading\n  text: Relance\n- type: paragraph\n"
                                              "  text: \"{{ customer|attr('__class__') }}\"\n")
    _edit(v1 / "plans.yaml", "  - id: overdue\n", "  - id: notice\n    name: Notice\n    design: blocks\n"
                                                  "    locales:\n      fr: {subject: Notice, body: notice.fr.blocks.yaml}\n"
                                                  "  - id: overdue\n")
    assert f"notice.fr.blocks.yaml:4: block 2 (paragraph) text: {UNDERSCORE} (here: __class__)" in _errors(v1)


def test_t2_expressions_nested_too_deeply_are_a_syntax_error_not_a_crash(v1: Path):
    (v1 / "courtesy.fr.txt").write_text("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}\n")
    assert "courtesy.fr.txt: template syntax: expressions are nested too deeply" in _errors(v1)


def test_t2_body_of_unclosed_openers_is_checked_in_one_pass(v1: Path):
    (v1 / "courtesy.fr.txt").write_text("@CUSTOMERNAME@ " + "{%" * 300_000)  # 600 KB: quadratic would take hours
    started = time.monotonic()
    assert "courtesy.fr.txt:1: template syntax: tag name expected" in _errors(v1)
    assert time.monotonic() - started < 3


def test_t2_html_full_of_unclosed_tags_gets_its_text_version_in_one_pass():
    templates = {"t": {"name": "T", "design": "html", "locales": {"fr": {"subject": "S", "body": "<a " * 300_000}}}}
    started = time.monotonic()
    email = Renderer(templates, {"name": "Acme"}).render("t", "fr", _context())
    assert email.text.startswith("<a <a ") and time.monotonic() - started < 3


def test_t2_legitimate_templates_stay_valid(v1: Path):
    (v1 / "courtesy.fr.txt").write_text(textwrap.dedent("""\
        {% set ns = namespace(total=0) %}{% for i in range(totals.count) %}{% set ns.total = ns.total + i %}{% endfor %}
        {{ invoices[0].number }} {{ invoices[totals.count - 1].number }} {{ invoices[invoices|length - 1].number }}
        {% for invoice in invoices|sort(attribute='due_date') %}{{ invoices[loop.index0].number }}{% endfor %}
        {{ invoices|map(attribute='number')|join(', ') }} {{ 'Total : %s'|format(totals.outstanding) }}
        {{ customer.name|replace(' ', '_') }} {{ customer.name[:10] }} {{ '-' * 24 }} {{ customer.name ~ ' ' ~ today }}
        {{ invoices|selectattr('days_overdue')|list|length }} {{ [1, 2, 3]|sum }} {{ 2 ** 10 }}
        """))
    load_config(v1)


# --- bounds on rendering ------------------------------------------------------------------------------

STATIC = [
    ("{{ 'x' * 10**8 }}", "too big to render: a text of 100,000,000 characters is over the limit of 1,000,000"),
    ("{{ 'x' * 10**10 }}", "too big to render: a text of 10,000,000,000 characters is over the limit of 1,000,000"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "too big to render: these loops would run 10,000,000,000 times, over the limit of 1,000,000 for one email"),
    ("{{ range(10**9)|list }}", "too big to render: range() of 1,000,000,000 numbers is over the limit of 100,000"),
    ("{{ 10 ** 100000 }}", "too big to render: a number of more than 3,000 digits is over the limit"),
    ("{{ '-'|center(10**9) }}", "too big to render: a text of 1,000,000,000 characters is over the limit of 1,000,000"),
    ("{{ '%999999999s' % 1 }}", "too big to render: a text of 1,000,000,011 characters is over the limit of 1,000,000"),
    ("{{ ['x' * 1000000] * 10 }}", "too big to render: a list of 1,000,002 items (nested ones included) is over the limit"),
]


@pytest.mark.parametrize(("expression", "message"), STATIC, ids=[e for e, _ in STATIC])
def test_t2_exhaustion_decided_by_literals_refused_at_validate(v1: Path, expression: str, message: str):
    (v1 / "overdue.fr.html").write_text(f"<p>Bonjour</p>\n{expression}\n")
    started = time.monotonic()
    text = _errors(v1)
    assert f"overdue.fr.html:2: {message}" in text, text
    assert time.monotonic() - started < 2


# Rendered in a child process: each must end in one RenderError, quickly, without the memory to show for it.
RENDER_TIME = {
    "nested ranges": "{% for i in range(totals.count * 50000) %}{% for j in range(totals.count * 50000) %}"
                     "{% endfor %}{% endfor %}",
    "repetition 10**8": "{{ customer.name * 10**8 }}",
    "repetition 10**10": "{{ customer.name * 10**10 }}",
    "recursive macro": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "recursive loop": "{% for x in invoices recursive %}{{ loop(invoices) }}{% endfor %}",
    "doubling with ~": "{% set ns = namespace(s=customer.name) %}"
                       "{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "doubling with +": "{% set ns = namespace(s=[customer]) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "output": "{% for i in range(100000) %}{{ customer.name }}{% endfor %}",
    "width": "{{ customer.name.center(totals.count * 10**9) }}",
    "replace": "{% set s = customer.name * 40000 %}{{ s|replace('a', s) }}",
    "shared lists": "{% set a = [customer.name * 2000] * 20 %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}{{ b }}",
    "time": "{% set l = range(totals.count * 50000)|list %}{% set m = range(totals.count * 50000)|list %}"
            "{% for i in range(100000) %}{% for j in range(9) %}{% if l == m %}{% endif %}{% endfor %}{% endfor %}",
}
_CHILD = """
import json, sys, time
sys.path.insert(0, {tests!r})
from test_render import _context
from dunningops.render import RenderError, Renderer
for name, body in json.loads(sys.argv[1]).items():
    templates = {{"t": {{"name": "T", "design": "text", "locales": {{"fr": {{"subject": "S", "body": body}}}}}}}}
    started = time.monotonic()
    try:
        Renderer(templates, {{"name": "Acme"}}).render("t", "fr", _context())
        outcome = "rendered"
    except RenderError as exc:
        outcome = str(exc)
    print(json.dumps([name, outcome, time.monotonic() - started]), flush=True)
# VmHWM, this process's own peak: ru_maxrss keeps the parent's peak across fork and exec (Linux), so
# it said 431 MB once the pytest process had grown that big.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps(["peak", int(hwm.split()[1]) // 1024, 0]))
"""


def test_t2_exhaustion_at_render_time_ends_in_one_clear_error():
    child = _CHILD.format(tests=str(Path(__file__).parent))
    result = subprocess.run([sys.executable, "-c", child, json.dumps(RENDER_TIME)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {name: (outcome, seconds) for name, outcome, seconds in map(json.loads, result.stdout.splitlines())}
    for name in RENDER_TIME:
        outcome, seconds = rows[name]
        assert outcome.startswith("template 't' (fr), body"), (name, outcome)
        assert ": stopped: " in outcome and "\n" not in outcome, (name, outcome)
        assert seconds < MAX_SECONDS + 2, (name, seconds)
    assert "loops ran more than 1,000,000 times" in rows["nested ranges"][0]
    assert "a text of 2,300,000,000 characters is over the limit of 1,000,000" in rows["repetition 10**8"][0]
    assert "calls are nested more than 50 deep" in rows["recursive macro"][0]
    assert "the rendered text is longer than 1,000,000 characters" in rows["output"][0]
    assert "rendering took longer than 2 seconds" in rows["time"][0]
    assert rows["peak"][0] < 400, f"peak memory {rows['peak'][0]} MB"


def test_t2_render_errors_name_template_language_and_part():
    templates = {"t": {"name": "T", "design": "html", "locales": {"en": {"subject": "{{ 'x' * 10**7 }}", "body": "<p>x</p>"}}}}
    with pytest.raises(RenderError) as info:
        Renderer(templates, {"name": "Acme"}).render("t", "en", _context("en_GB"))
    assert str(info.value) == ("template 't' (en), subject line 1: stopped: a text of 10,000,000 characters "
                               "is over the limit of 1,000,000")


def test_t3_preview_of_an_exhausting_template_stored_before_the_checks_ends_in_one_line(run, v1: Path, tmp_path: Path,
                                                                                       monkeypatch):
    monkeypatch.setenv("DUNNINGOPS_NOW", "2026-11-20T09:00:00+00:00")
    url = f"sqlite:///{tmp_path}/state.db"
    assert run("apply", "--config", v1, "--database-url", url, "--auto-approve").exit_code == 0
    for kind in ("customers", "contacts", "invoices", "payments"):
        assert run("ledger", "import", kind, LEDGER / f"{kind}.csv", "--config", v1, "--database-url", url).exit_code == 0
    store = open_store(url)  # a template applied by an older version, which did not bound rendering
    try:
        with store.session() as session:
            locales = session.scalar(select(TemplateRow.locales).where(TemplateRow.id == "courtesy"))
            locales["fr"]["body"] = "Bonjour,\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
            session.execute(update(TemplateRow).where(TemplateRow.id == "courtesy").values(locales=dict(locales)))
    finally:
        store.dispose()
    started = time.monotonic()
    result = _cli("template", "preview", "courtesy", "--customer", "C1", "--out", tmp_path / "preview",
                  "--config", v1, "--database-url", url, timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert result.stderr == ("Error: template 'courtesy' (fr), body line 2: stopped: loops ran more than 1,000,000 times "
                             "for one email\n")
    assert not (tmp_path / "preview").exists()  # nothing written


def test_validate_report_snapshot(run, v1: Path, secret: Path, snapshot):
    """What a pull request's author reads when the config reaches outside itself or past the limits."""
    _edit(v1 / "plans.yaml", "body: courtesy.fr.txt", "body: ../outside/secret.txt")
    (v1 / "courtesy.en.txt").write_text("Hello {{ contact.name }},\n\n{{ customer|attr('__class__') }}\n")
    (v1 / "overdue.fr.html").write_text("<p>Bonjour</p>\n{{ 'x' * 10**8 }}\n")
    result = run("validate", "--config", v1)
    assert result.exit_code == 1 and SECRET not in result.output
    assert result.stderr == snapshot
