"""What an import checks rows against: the applied config (members, plans, functions, company defaults)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunningops.errors import ConflictError
from dunningops.store.schema import ContactFunctionRow, MemberRow, PlanRow, SettingsRow


@dataclass(frozen=True)
class LedgerContext:
    currency: str
    locale: str
    members: dict[str, str]  # id or lower-cased email → member id
    plans: frozenset[str]
    functions: dict[str, str]  # id, label or translated label (lower-cased) → function id

    @classmethod
    def load(cls, session: Session) -> LedgerContext:
        settings = session.scalar(select(SettingsRow.data))
        if settings is None:
            raise ConflictError("the store has no applied config yet: run `dunningops apply` before importing the ledger")
        members: dict[str, str] = {}
        for ident, email in session.execute(select(MemberRow.id, MemberRow.email)):
            members[ident] = ident
            members[email.lower()] = ident
        functions: dict[str, str] = {}
        for ident, label, labels in session.execute(
            select(ContactFunctionRow.id, ContactFunctionRow.label, ContactFunctionRow.labels)
        ):
            # C7: functions arrive by id or by label, in any of their languages.
            for name in (ident, label, *labels.values()):
                functions.setdefault(name.lower(), ident)
        return cls(
            currency=settings["company"]["currency"],
            locale=settings["company"]["locale"],
            members=members,
            plans=frozenset(session.scalars(select(PlanRow.id))),
            functions=functions,
        )

    def function_id(self, name: str) -> str:
        found = self.functions.get(name.lower())
        if found is None:
            known = sorted(set(self.functions.values()))
            close = difflib.get_close_matches(name.lower(), list(self.functions), n=1, cutoff=0.6)
            hint = f"; did you mean {self.functions[close[0]]!r}?" if close else f" (known: {', '.join(known)})"
            raise ValueError(f"unknown contact function {name!r}{hint}")
        return found
