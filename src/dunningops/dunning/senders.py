"""Who an email is from (A2, A3, A6, A7, E4, E5): the step's alias, the account manager or a member,
sent from the fallback sender when the address is outside the verified deliverability domain.
"""

from __future__ import annotations

from dataclasses import dataclass

from dunningops.dunning.runconfig import RunConfig


@dataclass(frozen=True)
class Sender:
    ref: str  # alias.billing | member.alice | fallback — recorded in the history (A8)
    name: str  # display name
    email: str  # the identity's own address
    from_address: str  # what goes in From: (the identity, or the fallback sender)
    reply_to: str | None
    signature: str
    note: str | None = None  # why the fallback was used


def resolve(config: RunConfig, ref: str | None, account_manager: str | None, plan_reply_to: str | None) -> Sender:
    """The sender of an email whose step says ``from: ref``."""
    settings = config.settings
    company = settings.company.name
    fallback = settings.deliverability.fallback_sender
    domain = settings.deliverability.domain
    kind, _, ident = (ref or "").partition(".")
    note = None
    if kind == "account_manager":
        kind, ident = "member", account_manager or ""
        if not account_manager:
            note = "the customer has no account manager"
    if kind == "alias" and ident in config.aliases:
        alias = config.aliases[ident]
        name, email, signature = alias["display_name"], alias["email"], alias.get("signature") or ""
        if not alias["verified"]:
            # A3: only verified aliases are used as senders.
            name, email, signature, note = company, fallback, "", f"alias {ident} is not verified yet"
            ref = "fallback"
        else:
            ref = f"alias.{ident}"
    elif kind == "member" and ident in config.members:
        member = config.members[ident]
        name, email, signature, ref = member["name"], member["email"], f"{member['name']}\n{company}", f"member.{ident}"
    else:
        name, email, signature, ref = company, fallback, "", "fallback"
    # A2/E5: outside the deliverability domain (or none is set), From is the fallback sender,
    # with the identity's name shown and its address as Reply-To.
    own_domain = email.rsplit("@", 1)[-1].lower()
    if email != fallback and (not domain or own_domain != domain.lower()):
        from_address, reply_to = fallback, email
        note = note or f"{email} is outside the deliverability domain {domain or '(none)'}"
    else:
        from_address, reply_to = email, (email if email != fallback else None)
    # A7: replies go to the plan's reply-to when it sets one.
    return Sender(ref or "fallback", name, email, from_address, plan_reply_to or reply_to, signature, note)
