"""The few words the renderer writes itself (invoice table headings), per template language.

A language without its own labels gets the English ones.
"""

from __future__ import annotations

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "Invoice",
        "due_date": "Due date",
        "days_overdue": "Days overdue",
        "amount": "Amount",
        "outstanding": "Outstanding",
        "document": "Document",
        "view": "View",
        "total": "Total outstanding",
        "due": "due",
        "one_day": "1 day overdue",
        "n_days": "{n} days overdue",
        "colon": ": ",
    },
    "fr": {
        "invoice": "Facture",
        "due_date": "Échéance",
        "days_overdue": "Jours de retard",
        "amount": "Montant",
        "outstanding": "Reste dû",
        "document": "Document",
        "view": "Voir",
        "total": "Total restant dû",
        "due": "échéance",
        "one_day": "1 jour de retard",
        "n_days": "{n} jours de retard",
        "colon": " : ",
    },
}


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language, LABELS["en"])


def days_overdue(n: int, words: dict[str, str]) -> str:
    return words["one_day"] if n == 1 else words["n_days"].format(n=n)
