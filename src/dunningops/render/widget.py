"""T8's ``@widgetvaluation@``: the links with which a customer rates how an incident was handled.

One object for every design: in an HTML body (autoescaped) Jinja takes its ``__html__``, five
scores as links, each opening the rating page with that score chosen; in a text body it is one
line with the page's link (the branded layout turns the URL into a link). Without an incident to
rate (``url`` None) it prints nothing, so a reminder template may carry it too.
"""

from __future__ import annotations

from markupsafe import Markup

SCORES = (1, 2, 3, 4, 5)
_WORDS = {
    "fr": ("Comment avons-nous traité votre demande ?", "Donner votre avis", "sur 5"),
    "en": ("How did we handle your request?", "Rate us", "out of 5"),
}


class RatingWidget:
    __slots__ = ("language", "url")

    def __init__(self, url: str | None, language: str):
        self.url = url
        self.language = language

    def _words(self) -> tuple[str, str, str]:
        return _WORDS.get(self.language, _WORDS["en"])

    def link(self, score: int | None = None) -> str:
        assert self.url is not None
        return self.url if score is None else f"{self.url}?score={score}"

    def __bool__(self) -> bool:
        return self.url is not None

    def __str__(self) -> str:
        if self.url is None:
            return ""
        question, action, _ = self._words()
        return f"{question} {action} : {self.link()}" if self.language == "fr" else f"{question} {action}: {self.link()}"

    def __html__(self) -> str:
        if self.url is None:
            return ""
        question, _, out_of = self._words()
        stars = Markup("").join(
            Markup(
                '<a href="{}" title="{} {}" style="display:inline-block; padding:4px 6px; font-size:22px; '
                'color:#f5a623; text-decoration:none;">{}</a>'
            ).format(self.link(s), s, out_of, "★" * s)
            for s in SCORES
        )
        return str(Markup('<p style="margin:16px 0 4px;">{}</p><p style="margin:0 0 16px;">{}</p>').format(question, stars))
