"""Cross-reference checks of a merged config: what a step, a setting or a rename points at exists.

Each problem is a ConfigIssue at the line of the offending key, with the
closest valid name when it looks like a misspelling.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from pathlib import Path

from dunningops.errors import ConfigIssue
from dunningops.spec.notices import BUILT_IN_ROLES
from dunningops.spec.paths import MAX_BODY_BYTES, FileProblem, read_inside, resolve_in, resolve_named, resolved
from dunningops.spec.state import DesiredState
from dunningops.spec.types import KINDS, parse_days, split_ref


def _unknown(kind: str, ident: str, known: dict) -> str:
    message = f"unknown {kind} {ident!r}"
    close = difflib.get_close_matches(ident, list(known), n=1, cutoff=0.6)
    return message + (f"; did you mean {close[0]!r}?" if close else "")


def body_path(state: DesiredState, template_id: str, name: str) -> Path | None:
    """Where a template's body file really is (symlinks followed), or None if it may not be read."""
    folder = (state.root / state.sources[f"template.{template_id}"].file).parent
    try:
        return resolve_named(resolved(state.root), folder, name, "body file")
    except FileProblem:
        return None


# A source that passed check_template: (design, text), the subject's design being "subject".
CheckedSource = tuple[str, str]


def read_template_bodies(
    state: DesiredState, issues: list[ConfigIssue], known_good: Collection[CheckedSource] = frozenset()
) -> None:
    """Read each template's body files (beside the YAML that defines it) and check them as the renderer
    will use them: syntax, @TAG@s, blocks, and variables that do not exist (a reminder is never sent
    with a hole in it).

    A body file must be a regular file inside the config directory (symlinks followed), of at most
    MAX_BODY_BYTES: the config is untrusted input, and a body ends up in plans posted for review.

    Args:
        known_good: sources already checked, e.g. the bodies and subjects the store holds (apply
            checked them): a source equal to one of them, in the same design, is not parsed again
            (parsing every body was most of `plan`'s time). A check depends on the text and the
            design only, so the outcome is the same; a new or changed source is always checked.
    """
    root = resolved(state.root)
    real_folders: dict[Path, Path] = {}  # many templates share a folder: resolve it once
    for tid, template in state.templates.items():
        src = state.sources[f"template.{tid}"]
        folder = (state.root / src.file).parent
        for lang, loc in template.locales.items():
            key = f"templates[{tid}].locales.{lang}.body"
            line = src.line_of("locales", lang, "body")
            try:
                if folder not in real_folders:
                    real_folders[folder] = resolved(folder)
                real = resolve_in(root, real_folders[folder], loc.body, "body file")
                text = read_inside(root, real, MAX_BODY_BYTES, "body file", loc.body)
            except FileNotFoundError:
                issues.append(ConfigIssue(src.file, line, key, f"body file {loc.body!r} not found beside {src.file}"))
                continue
            except FileProblem as exc:
                if exc.line:  # not UTF-8: the place is inside the body file
                    issues.append(ConfigIssue(real.relative_to(root).as_posix(), exc.line, "", exc.message))
                else:
                    issues.append(ConfigIssue(src.file, line, key, exc.message))
                continue
            except OSError as exc:
                issues.append(ConfigIssue(src.file, line, key, f"cannot read body file {loc.body!r}: {exc.strerror or exc}"))
                continue
            state.template_bodies[(tid, lang)] = text
            body_file = real.relative_to(root).as_posix()
            if (template.design, text) not in known_good:
                for problem_line, message in _check(text, template.design):
                    issues.append(ConfigIssue(body_file, problem_line, "", message))
            if ("subject", loc.subject) not in known_good:
                for _, message in _check(loc.subject, "subject"):
                    where = src.line_of("locales", lang, "subject")
                    issues.append(ConfigIssue(src.file, where, key[:-4] + "subject", message))


def _check(source: str, design: str) -> list[tuple[int | None, str]]:
    # Imported on first use: when every source is known good, a plan never loads Jinja and the
    # renderer (a tenth of its start-up).
    from dunningops.render.checks import check_template

    return check_template(source, design)


def check_references(state: DesiredState, issues: list[ConfigIssue]) -> None:
    """Check every reference between objects; append one issue per dangling or bad one."""
    settings = state.settings
    assert settings is not None
    s_src = state.sources["settings"]

    alias = settings.portal.notifications_alias
    if alias and alias not in state.aliases:
        # A5/A9: portal notifications need an alias; one still used cannot be deleted.
        issues.append(
            ConfigIssue(
                s_src.file,
                s_src.line_of("portal", "notifications_alias"),
                "settings.portal.notifications_alias",
                _unknown("alias", alias, state.aliases) + " (an alias used for portal notifications cannot be deleted)",
            )
        )
    if state.members and not any(m.role == "owner" for m in state.members.values()):
        first = next(iter(state.members))
        src = state.sources[f"member.{first}"]
        issues.append(
            ConfigIssue(
                src.file,
                src.line,
                "members",
                "no member has role owner (reply to-dos of automatic emails sent with an alias go to the owner)",
            )
        )

    for mid, member in state.members.items():
        # T1: a member's role is built in or defined in settings.roles.
        if member.role not in BUILT_IN_ROLES and member.role not in settings.roles:
            src = state.sources[f"member.{mid}"]
            known = ", ".join([*BUILT_IN_ROLES, *settings.roles])
            issues.append(
                ConfigIssue(
                    src.file, src.line_of("role"), f"members[{mid}].role", f"unknown role {member.role!r} (known: {known})"
                )
            )
    _check_notifications(state, settings, s_src, issues)

    defaults = [pid for pid, plan in state.plans.items() if plan.assign.default]
    for pid in defaults[1:]:
        src = state.sources[f"plan.{pid}"]
        issues.append(
            ConfigIssue(
                src.file,
                src.line_of("assign", "default"),
                f"plans[{pid}].assign.default",
                f"only one plan can be the default; {defaults[0]!r} already is",
            )
        )

    removed = {r.from_.split(".", 1)[1] for r in state.removed}
    for pid, plan in state.plans.items():
        _check_plan(state, pid, plan, removed, settings.company.language, issues)
    _check_moved(state, issues)
    _check_removed(state, issues)


def _check_plan(state, pid, plan, removed, language, issues) -> None:
    src = state.sources[f"plan.{pid}"]
    seen: set[str] = set()
    previous: int | None = None
    for index, step in enumerate(plan.steps):
        where = f"plans[{pid}].steps[{step.id}]"

        # Bound now (defaults): the helper is called within this iteration only, but say so.
        def add(key: str, message: str, *path: object, index: int = index, where: str = where) -> None:
            issues.append(ConfigIssue(src.file, src.line_of("steps", index, *path), f"{where}.{key}" if key else where, message))

        if step.id in seen:
            add("id", f"step id {step.id!r} is used twice in this plan", "id")
        seen.add(step.id)
        days = parse_days(step.at)
        if previous is not None and days <= previous:
            add("at", f"step offsets must strictly increase: {step.at} comes after {previous}d", "at")
        previous = days
        if step.from_:
            add_sender = _check_actor(state, step.from_, ("alias", "member", "account_manager"))
            if add_sender:
                add("from", add_sender, "from")
        if step.assignee:
            problem = _check_actor(state, step.assignee, ("member", "account_manager"))
            if problem:
                add("assignee", problem, "assignee")
        for key in ("to", "cc", "bcc"):
            for fn_index, fn in enumerate(getattr(step, key)):
                if fn in removed:
                    add(
                        key,
                        f"contact function {fn!r} is removed: take it out of `{key}` "
                        "(a step with no function goes to the primary contact)",
                        key,
                        fn_index,
                    )
                elif fn not in state.contact_functions:
                    add(key, _unknown("contact function", fn, state.contact_functions), key, fn_index)
        if step.template:
            template = state.templates.get(step.template)
            if template is None:
                add("template", _unknown("template", step.template, state.templates), "template")
            elif language not in template.locales:
                add("template", f"template {step.template!r} has no body for the company language {language!r}", "template")


def _check_notifications(state: DesiredState, settings, s_src, issues: list[ConfigIssue]) -> None:
    """T7, T8, A9: each notification's template (with the company language), sender and functions."""
    language = settings.company.language
    notices = settings.notifications
    for name in ("debtor", "incident_opened", "incident_closed", "payment_receipt", "payment_failed"):
        notice = getattr(notices, name)
        if notice is None:
            continue

        def add(key: str, message: str, *path: object, name: str = name) -> None:
            line = s_src.line_of("notifications", name, *path) if path else s_src.line_of("notifications", name)
            issues.append(ConfigIssue(s_src.file, line, f"settings.notifications.{name}.{key}", message))

        template = state.templates.get(notice.template)
        if template is None:
            add("template", _unknown("template", notice.template, state.templates), "template")
        elif language not in template.locales:
            add("template", f"template {notice.template!r} has no body for the company language {language!r}", "template")
        sender = getattr(notice, "from_", None)
        if sender:
            problem = _check_actor(state, sender, ("alias", "member", "account_manager"))
            if problem:
                add("from", problem, "from")
        elif not settings.portal.notifications_alias:
            # A9: portal notifications go out from the alias chosen in settings.
            add("template", "portal notifications need settings.portal.notifications_alias (the alias they are sent from)")
        for key in ("to", "cc"):
            for index, fn in enumerate(getattr(notice, key, [])):
                if fn not in state.contact_functions:
                    add(key, _unknown("contact function", fn, state.contact_functions), key, index)


def _check_actor(state: DesiredState, ref: str, allowed: tuple[str, ...]) -> str | None:
    kind, ident = split_ref(ref)
    shapes = " or ".join(f"{k}.<id>" if k != "account_manager" else k for k in allowed)
    if kind not in allowed or (kind == "account_manager") != (ident is None):
        return f"{ref!r} is not a valid reference: expected {shapes}"
    if ident is None:  # account_manager: nothing to look up
        return None
    if kind == "alias" and ident not in state.aliases:
        return _unknown("alias", ident, state.aliases)
    if kind == "member" and ident not in state.members:
        return _unknown("member", ident, state.members)
    return None


def _check_moved(state: DesiredState, issues: list[ConfigIssue]) -> None:
    targets: set[str] = set()
    for moved in state.moved:
        src = state.sources[f"moved.{moved.from_}"]
        (fk, fid), (tk, tid) = split_ref(moved.from_), split_ref(moved.to)

        def add(message: str, src=src, moved=moved) -> None:
            issues.append(ConfigIssue(src.file, src.line, f"moved[{moved.from_}]", message))

        if fk not in KINDS[1:] or fk != tk:
            add(f"a move stays within one kind ({', '.join(KINDS[1:])}): {moved.from_} → {moved.to}")
            continue
        if tid not in state.collection(tk):
            add(f"{moved.to} is not defined in the config")
        if fid in state.collection(fk):
            add(f"{moved.from_} is still defined in the config; a moved object exists only under its new name")
        if moved.to in targets:
            add(f"two moves lead to {moved.to}")
        targets.add(moved.to)


def _check_removed(state: DesiredState, issues: list[ConfigIssue]) -> None:
    for removed in state.removed:
        src = state.sources[f"removed.{removed.from_}"]
        fid = removed.from_.split(".", 1)[1]
        if fid in state.contact_functions:
            issues.append(
                ConfigIssue(src.file, src.line, f"removed[{removed.from_}]", f"{removed.from_} is still defined in the config")
            )
        if removed.reassign_to is not None and removed.reassign_to not in state.contact_functions:
            issues.append(
                ConfigIssue(
                    src.file,
                    src.line_of("reassign_to"),
                    f"removed[{removed.from_}].reassign_to",
                    _unknown("contact function", removed.reassign_to, state.contact_functions),
                )
            )
