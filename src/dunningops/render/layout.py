"""T2: the company's branded email layout (logo, brand colour) around "text" and "blocks" bodies.

Table-based, inline CSS, 600 px wide and fluid under 620 px: what email
clients render alike. Built once per (company, language); a message only
fills in its subject and content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import escape

from dunningops.render.escaping import escape_text

DEFAULT_BRAND = "#1f4e79"
PAGE_BG, TEXT, MUTED, RULE = "#f3f5f7", "#1d2733", "#6b7785", "#e3e7eb"
FONT = "Arial, Helvetica, sans-serif"

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_URL = re.compile(r"https?://[^\s<>\"]+")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n[ \t\n]*")


def brand_colour(company: dict) -> str:
    colour = company.get("brand_color") or ""
    return colour if _HEX.match(colour) else DEFAULT_BRAND


def ink_on(colour: str) -> str:
    """White or dark text, whichever reads on ``colour`` (a light brand colour gets dark text)."""
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#ffffff" if luminance < 0.6 else TEXT


@dataclass(frozen=True)
class Shell:
    """The layout split around the two things that change per message: the subject (as title) and the content."""

    head: str
    top: str
    bottom: str

    def wrap(self, subject: str, content: str) -> str:
        return f"{self.head}{escape_text(subject)}{self.top}{content}{self.bottom}"


def shell(company: dict, language: str) -> Shell:
    brand = brand_colour(company)
    name = escape(company.get("name") or "")
    if company.get("logo_url"):
        header = (
            f'<img src="{escape(company["logo_url"])}" alt="{name}" height="40" '
            f'style="display:block; height:40px; width:auto; border:0; outline:none; text-decoration:none;">'
        )
    else:
        header = f'<span style="color:{ink_on(brand)}; font-size:20px; font-weight:bold;">{name}</span>'
    head = (
        "<!DOCTYPE html>\n"
        f'<html lang="{escape(language)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="x-apple-disable-message-reformatting">\n<title>'
    )
    top = (
        "</title>\n<style>\n"
        "  body { margin: 0; padding: 0; }\n"
        "  table { border-collapse: collapse; }\n"
        f"  a {{ color: {brand}; }}\n"
        "  @media only screen and (max-width: 620px) {\n"
        "    .dno-container { width: 100% !important; }\n"
        "    .dno-content { padding: 24px 16px !important; }\n"
        "    .dno-hide-sm { display: none !important; }\n"
        "  }\n"
        "</style>\n</head>\n"
        f'<body style="margin:0; padding:0; background:{PAGE_BG}; font-family:{FONT}; color:{TEXT};">\n'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background:{PAGE_BG};">\n'
        '<tr><td align="center" style="padding:24px 8px;">\n'
        '<table role="presentation" class="dno-container" width="600" cellpadding="0" cellspacing="0" border="0" '
        'style="width:600px; max-width:600px; background:#ffffff;">\n'
        f'<tr><td bgcolor="{brand}" style="background:{brand}; padding:20px 32px;">{header}</td></tr>\n'
        f'<tr><td class="dno-content" style="padding:32px; font-family:{FONT}; font-size:15px; line-height:1.6; color:{TEXT};">\n'
    )
    bottom = (
        "\n</td></tr>\n"
        f'<tr><td style="padding:16px 32px; background:{PAGE_BG}; font-family:{FONT}; font-size:12px; '
        f'line-height:1.5; color:{MUTED};">{name}</td></tr>\n'
        "</table>\n</td></tr>\n</table>\n</body>\n</html>\n"
    )
    return Shell(head, top, bottom)


def linkify(escaped: str) -> str:
    """Make the http(s) URLs of already escaped text clickable (trailing punctuation stays outside)."""

    def link(match: re.Match) -> str:
        url = match.group(0)
        stripped = url.rstrip(".,;:!?)")
        return f'<a href="{stripped}">{stripped}</a>{url[len(stripped) :]}'

    return _URL.sub(link, escaped)


def text_html(text: str) -> str:
    """Plain text as HTML: escaped, links made clickable, line breaks kept."""
    return linkify(str(escape(text))).replace("\n", "<br>\n")


def text_to_html(text: str) -> str:
    """A text body as HTML paragraphs: a blank line starts a paragraph, a line break stays one."""
    # Escaping and linking work the same on the whole text as paragraph by paragraph (neither
    # touches white space, no URL spans any): done once, in two passes instead of two a paragraph.
    paragraphs = _PARAGRAPHS.split(linkify(str(escape(text.strip()))))
    return "\n".join('<p style="margin:0 0 16px;">' + p.replace("\n", "<br>\n") + "</p>" for p in paragraphs if p.strip())
