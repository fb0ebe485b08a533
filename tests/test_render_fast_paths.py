"""The shortcuts rendering takes for speed give what Jinja's own way gives.

``BoundedEnvironment.getattr`` reads a template object's field as an item at once, and
``environment.render`` runs a template without rebuilding its globals per call: both must
return, refuse and report exactly as the sandbox and ``Template.render`` do.
"""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from dunningops.render.environment import compile_template, environment, render
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
