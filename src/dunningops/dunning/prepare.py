"""What each due step becomes, shared by the dry run and the real run: recipients chosen and the
email or letter rendered, so that what the dry run says (send, to-do and why, error) is what the
real run then does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from dunningops.dunning import compose
from dunningops.dunning.context import RunContext
from dunningops.dunning.recipients import Recipients
from dunningops.dunning.schedule import Decision
from dunningops.render import RenderedEmail, RenderError
from dunningops.render.renderer import RenderRequest

__all__ = ["PreparedStep", "prepare", "with_reason"]


@dataclass
class PreparedStep:
    decision: Decision
    outcome: str  # send | todo | error
    draft: compose.Draft | None = None
    todo_kind: str | None = None  # email | letter | call | no_recipient
    payload: dict = field(default_factory=dict)


# A step waiting for its rendering: the request, and what the rendered email makes of the step.
_Waiting = tuple[RenderRequest, Callable[[RenderedEmail], PreparedStep]]


def prepare(session: Session, ctx: RunContext, batch: list[Decision]) -> list[PreparedStep]:
    """Recipients and rendering for each due step; updates each decision's outcome and reason to match."""
    loaded = compose.Batch.load(session, [d.customer_id for d in batch], ctx.today)
    out: list[PreparedStep | _Waiting | RenderError] = []
    for d in batch:
        try:
            out.append(_prepare_automatic(ctx, loaded, d) if d.outcome == "send" else _prepare_manual(ctx, loaded, d))
        except RenderError as exc:
            out.append(exc)
    # The batch's emails and letters are rendered together: in a process of their own in a large run
    # (render_worker.py).
    waiting = [(i, step) for i, step in enumerate(out) if isinstance(step, tuple)]
    rendered = ctx.renderer.render_many([request for _, (request, _) in waiting])
    for (i, (_, finish)), email in zip(waiting, rendered, strict=True):
        out[i] = email if isinstance(email, RenderError) else finish(email)
    prepared = []
    for d, step in zip(batch, out, strict=True):
        if isinstance(step, RenderError):
            # Never sent (nor prepared for a person) with a hole in it; the step stays due until the template is fixed.
            d.outcome, d.reason = "error", with_reason(f"cannot be rendered: {step}", d.reason)
            ctx.report.errors.append(f"{d.customer} {d.plan.id}.{d.step.id}: {step}")
            step = PreparedStep(d, "error")
        assert isinstance(step, PreparedStep)
        prepared.append(step)
    return prepared


def with_reason(reason: str, notes: str) -> str:
    """What the run will do first, then what decide() noted (merged invoices, entry step)."""
    return "; ".join(filter(None, (reason, notes)))


def _nobody(problem: str | None) -> str:
    return f"nobody can be written to: {problem}"


def _prepare_automatic(ctx: RunContext, loaded: compose.Batch, d: Decision) -> PreparedStep | _Waiting:
    found = compose.pending(ctx.config, loaded, d, ctx.today)
    if isinstance(found, Recipients):
        d.outcome, d.reason = "todo", with_reason(_nobody(found.problem), d.reason)
        return PreparedStep(d, "todo", todo_kind="no_recipient", payload={"action": "email", "problem": found.problem})
    return found.request, lambda email: PreparedStep(d, "send", draft=found.drafted(email))


def _prepare_manual(ctx: RunContext, loaded: compose.Batch, d: Decision) -> PreparedStep | _Waiting:
    payload: dict = {"action": d.step.action, "invoice_ids": [r.id for r in loaded.invoices_for(d)]}
    if d.step.action == "email":
        found = compose.pending(ctx.config, loaded, d, ctx.today)
        if isinstance(found, Recipients):
            payload["problem"] = found.problem
            d.reason = with_reason(_nobody(found.problem), d.reason)
            return PreparedStep(d, "todo", todo_kind="email", payload=payload)

        def email_todo(email: RenderedEmail) -> PreparedStep:
            return PreparedStep(d, "todo", todo_kind="email", payload={**payload, **_prepared_email(found.drafted(email))})

        return found.request, email_todo
    if d.step.action == "letter":
        template = compose.template_of(d.step)
        language, locale = compose.pick_language(ctx.config, template, d.locale)
        primary = next((c for c in loaded.contacts.get(d.customer_id, []) if c.is_primary), None)
        sender = compose.resolve(ctx.config, None, d.account_manager, None)
        context = compose.context(
            ctx.config,
            d,
            loaded.invoices_for(d),
            primary,
            sender,
            ctx.today,
            locale,
            rating_url=loaded.rating_url(ctx.config.settings, d.customer_id, ctx.today),
            address=loaded.addresses.get(d.customer_id),
        )

        def letter_todo(letter: RenderedEmail) -> PreparedStep:
            rendered = {"template": template, "language": language, "subject": letter.subject}
            rendered.update(html=letter.html, text=letter.text)
            return PreparedStep(d, "todo", todo_kind="letter", payload={**payload, **rendered})

        return (template, language, context), letter_todo
    payload["phones"] = [
        {"name": c.name, "phone": c.phone, "email": c.email} for c in loaded.contacts.get(d.customer_id, []) if c.phone
    ]
    return PreparedStep(d, "todo", todo_kind=d.step.action, payload=payload)


def _prepared_email(drafted: compose.Draft) -> dict:
    """A6: the prepared email, sender preselected; the person sending may change it."""
    r = drafted.recipients
    return {
        "sender": drafted.sender.ref,
        "from": drafted.sender.from_address,
        "from_name": drafted.sender.name,
        "reply_to": drafted.sender.reply_to,
        "to": [c.email for c in r.to],
        "cc": [c.email for c in r.cc],
        "bcc": [c.email for c in r.bcc],
        "template": drafted.decision.step.template,
        "language": drafted.language,
        "subject": drafted.email.subject,
        "text": drafted.email.text,
        "html": drafted.email.html,
        "invoice_ids": drafted.invoice_ids,
    }
