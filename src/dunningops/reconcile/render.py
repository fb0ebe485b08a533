"""Plan renderers: text (a terminal), markdown (a pull-request comment), json (CI).

Each renderer is a function of the Plan alone; none computes anything or writes
anywhere but its return value. Secret-looking values are masked in all three.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from dunningops.reconcile.diff import flatten
from dunningops.reconcile.plan import Change, Plan

# GitHub refuses comments over 65,536 characters; keep a margin for wrappers.
MARKDOWN_LIMIT = 65_000
SENSITIVE = re.compile(r"(password|secret|token|api_key|webhook_url)$", re.IGNORECASE)
MASK = "(sensitive value)"
LONG_TEXT = 80

HEADLINES = {
    "create": "will be created",
    "update": "will be updated in place",
    "replace": "must be replaced",
    "delete": "will be destroyed",
    "move": "has moved",
}


def mask(path: str, value: Any) -> Any:
    leaf = path.rsplit(".", 1)[-1].split("]")[-1]
    return MASK if value is not None and SENSITIVE.search(leaf) else value


def _value(value: Any) -> str:
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


def _is_long(value: Any) -> bool:
    return isinstance(value, str) and ("\n" in value or len(value) > LONG_TEXT)


def _headline(change: Change) -> str:
    text = f"# {change.address} {HEADLINES[change.action]}"
    if change.moved_from:
        text = f"# {change.moved_from} has moved to {change.address}"
        if change.action != "move":
            text += f" and {HEADLINES[change.action]}"
    if change.action == "replace":
        text += " (an alias's address cannot change: a new alias is created and must be verified again)"
    if change.note:
        text += f" ({change.note})"
    return text


def _body_lines(change: Change) -> list[str]:
    """The inner lines of one change, without indentation or colour."""
    lines: list[str] = []
    if change.action in ("create", "delete"):
        sign = "+" if change.action == "create" else "-"
        # Like Terraform, a new or destroyed object lists only the values it has.
        values = {
            p: v
            for p, v in flatten(change.after if change.action == "create" else change.before).items()
            if v not in (None, "", [], {})
        }
        width = max((len(p) for p in values if not _is_long(values[p])), default=0)
        for path, value in values.items():
            value = mask(path, value)
            if _is_long(value):
                lines.append(f"{sign} {path} = <<-EOT")
                lines.extend(f"      {line}" for line in value.splitlines())
                lines.append("  EOT")
            else:
                lines.append(f"{sign} {path.ljust(width)} = {_value(value)}")
        return lines
    width = max((len(f.path) for f in change.fields if not (_is_long(f.before) or _is_long(f.after))), default=0)
    for field in change.fields:
        before, after = mask(field.path, field.before), mask(field.path, field.after)
        sign = "+" if field.before is None else "-" if field.after is None else "~"
        if _is_long(before) or _is_long(after):
            lines.append(f"{sign} {field.path}:")
            diff = difflib.unified_diff(
                (before or "").splitlines(), (after or "").splitlines(), "before", "after", lineterm="", n=2
            )
            lines.extend(f"    {line}" for line in diff)
        else:
            suffix = "  # forces replacement" if field.forces_replacement else ""
            lines.append(f"{sign} {field.path.ljust(width)} = {_value(before)} -> {_value(after)}{suffix}")
    for follower in change.followers:
        lines.append(f"~ {follower}: references follow the move")
    return lines


def render_text(plan: Plan) -> str:
    """Terraform-style text for a terminal."""
    if plan.empty:
        return plan.summary_line() + "\n"
    out = ["dunningops will perform the following actions:", ""]
    for change in plan.changes:
        out.append(f"  {_headline(change)}")
        out.append(f'{change.symbol.rjust(3)} {change.kind} "{change.id}" {{')
        out.extend(f"      {line}" for line in _body_lines(change))
        out.append("    }")
        out.append("")
    for warning in plan.warnings:
        out.append(f"Warning: {warning}")
    out.append(plan.summary_line())
    return "\n".join(out) + "\n"


def render_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """A pull-request comment: a summary table, then each change in a folded diff block.

    It stays under ``limit`` characters: when the details would not fit, the
    remaining changes are listed in the table only and a closing line says so.
    """
    head = ["### dunningops plan", "", f"**{plan.summary_line()}**", ""]
    head.extend(f"> **Warning:** {w}" for w in plan.warnings)
    if plan.empty:
        return "\n".join(head) + "\n"
    table = ["| | object | action |", "|---|---|---|"]
    table.extend(f"| `{c.symbol}` | `{c.address}` | {c.action} |" for c in plan.changes)
    footer_room = 400
    text = "\n".join(head + table) + "\n"
    if len(text) + footer_room > limit:
        # Even the table is too long: keep as many rows as fit, then a count.
        rows, size = [], len("\n".join(head + table[:2]))
        for row in table[2:]:
            if size + len(row) + footer_room > limit:
                break
            rows.append(row)
            size += len(row) + 1
        hidden = len(plan.changes) - len(rows)
        text = (
            "\n".join(head + table[:2] + rows) + f"\n\n_…and {hidden} more changes. Run `dunningops plan` for the whole plan._\n"
        )
        return text
    details: list[str] = []
    shown = 0
    for change in plan.changes:
        block = details_block(change, HEADLINES[change.action], _headline(change))
        if len(text) + sum(map(len, details)) + len(block) + footer_room > limit:
            break
        details.append(block)
        shown += 1
    text += "".join(details) + "\n"
    if shown < len(plan.changes):
        text += (
            f"\n_Details of {len(plan.changes) - shown} more changes are left out to fit a comment. "
            "Run `dunningops plan` for the whole plan._\n"
        )
    return text


def details_block(change: Change, summary: str, headline: str) -> str:
    """One change folded in a markdown ``<details>``: its address and ``summary``, then ``headline`` and its diff."""
    return "\n".join(
        [
            "",
            f"<details><summary><code>{change.address}</code> {summary}</summary>",
            "",
            "```diff",
            headline,
            *(_diff_line(line) for line in _body_lines(change)),
            "```",
            "</details>",
        ]
    )


def _diff_line(line: str) -> str:
    # In a ```diff block, "~" lines would be plain: mark them as changes ("!"), and
    # bring a text diff's own +/- to the first column so that GitHub colours it.
    if line.startswith("~"):
        return "!" + line[1:]
    if line.startswith(("    +", "    -")) and not line.startswith(("    +++", "    ---")):
        return line[4] + "   " + line[5:]
    return line


def render_json(plan: Plan) -> str:
    data = plan.to_dict()
    data["digest"] = plan.digest
    for change in data["changes"]:
        for side in ("before", "after"):
            if change[side] is not None:
                change[side] = _mask_tree(change[side])
        for field in change["fields"]:
            field["before"], field["after"] = mask(field["path"], field["before"]), mask(field["path"], field["after"])
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _mask_tree(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask_tree(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_tree(v, key) for v in value]
    return mask(key, value)


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
