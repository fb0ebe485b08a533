"""Data tables for the demo ledger generator: markets, names, company forms, jobs, phones.

Pure data (tuples only, so iteration order never depends on hashing) plus ``fold``,
which turns a name into the ASCII used in e-mail addresses and domains.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# A job's hint: the keywords a contact-function id may contain for that job to carry it
# (so a "Comptable" gets the "accountant" function when the config defines one).
ACCOUNTANT: tuple[str, ...] = ("account", "compta", "buchhalt", "boekhoud", "contab")
PAYER: tuple[str, ...] = ("pay", "paie", "paiement", "zahl", "betal", "pago", "pagam")
PURCHASER: tuple[str, ...] = ("purchas", "achat", "achet", "einkauf", "inkoop", "compra", "acquist")
SALES: tuple[str, ...] = ("sales", "vente", "commerc", "vertrieb", "verkoop", "ventas", "vendit")
NO_HINT: tuple[str, ...] = ()


@dataclass(frozen=True)
class Market:
    """A country and language: what a customer's name, contacts and formats look like."""

    country: str
    locale: str
    weight: int  # relative share of customers
    currency: str
    tlds: tuple[str, ...]  # first is the usual one
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    activities: tuple[str, ...]
    patterns: tuple[str, ...]  # "{a}" activity, "{n}" surname; the legal form is appended
    legal_forms: tuple[str, ...]
    jobs: tuple[tuple[str, tuple[str, ...]], ...]  # (label, function hint)
    mailboxes: tuple[str, ...]  # shared accounting mailboxes, e.g. compta@
    phones: tuple[str, ...]  # "#" is a digit


# Data tables: a line per group of names reads better than a line per name.
# fmt: off
_FR_FIRST = (
    "Jean", "Marie", "Pierre", "Nathalie", "Philippe", "Isabelle", "Michel", "Sylvie", "Éric",
    "Hélène", "Jérôme", "Céline", "François", "Valérie", "Stéphane", "Émilie", "Frédéric",
    "Sophie", "Thierry", "Aurélie", "Benoît", "Chloé", "Grégoire", "Léa", "Amélie", "Rémi",
    "Noémie", "Julien", "Camille", "Mathieu", "Inès", "Hugo", "Océane", "Loïc", "Anaïs",
)
_FR_LAST = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "André", "Mercier", "Dupont", "Lambert", "Bonnet",
    "François", "Martinez", "Legrand", "Garnier", "Faure", "Rousseau", "Blanc", "Guérin",
    "Muller", "Henry", "Roussel", "Nicolas", "Perrin", "Mathieu", "Clément", "Gauthier",
    "Chevalier", "Lemaître", "Bélanger", "Ménard", "Prévost", "Besançon", "Côté",
)
_FR_ACTIVITIES = (
    "Boulangerie", "Transports", "Menuiserie", "Garage", "Imprimerie", "Pharmacie", "Plomberie",
    "Électricité", "Bâtiment", "Fromagerie", "Hôtel", "Brasserie", "Conseil", "Logistique",
    "Matériaux", "Charpente", "Ambulances", "Pâtisserie", "Informatique", "Nettoyage",
)
_FR_PATTERNS = ("{a} {n}", "{a} {n}", "{n} & Fils", "{n} {a}", "Établissements {n}")
_FR_JOBS = (
    ("Comptable", ACCOUNTANT), ("Comptable", ACCOUNTANT), ("DAF", PAYER),
    ("Responsable comptabilité fournisseurs", PAYER), ("Acheteur", PURCHASER),
    ("Responsable achats", PURCHASER), ("Directeur général", NO_HINT), ("Gérant", NO_HINT),
    ("Responsable de site", NO_HINT), ("Commercial", SALES), ("Services généraux", NO_HINT),
)
_FR_BOXES = ("compta", "comptabilite", "factures", "fournisseurs")

_BE_NL_FIRST = (
    "Jan", "Pieter", "Sofie", "Lotte", "Wouter", "Els", "Koen", "Griet", "Bart", "Annelies",
    "Jens", "Lien", "Thijs", "Fien", "Stijn", "Inge",
)
_BE_LAST = (
    "Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens",
    "Wouters", "De Smet", "Dubois", "Lambert", "Dupont", "Lejeune", "Renard", "Van Damme",
    "Vermeulen", "Desmet", "Leclercq", "Hermans",
)
_DE_FIRST = (
    "Thomas", "Andreas", "Stefan", "Sabine", "Jürgen", "Claudia", "Jörg", "Ursula", "Günther",
    "Petra", "Matthias", "Anja", "Björn", "Katrin", "Uwe", "Sönke", "Birgit", "Lukas",
)
_DE_LAST = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Krüger", "Hartmann", "Weiß", "Groß", "Köhler",
)
_DE_ACTIVITIES = (
    "Logistik", "Maschinenbau", "Elektrotechnik", "Bau", "Druckerei", "Metallbau", "Handel",
    "Transporte", "Bäckerei", "Werkzeugbau", "Sanitär", "Verpackung",
)
_DE_JOBS = (
    ("Buchhaltung", ACCOUNTANT), ("Finanzbuchhaltung", ACCOUNTANT), ("Leiter Finanzen", PAYER),
    ("Kreditorenbuchhaltung", PAYER), ("Einkäufer", PURCHASER), ("Geschäftsführer", NO_HINT),
    ("Standortleiter", NO_HINT), ("Vertrieb", SALES),
)
_DE_BOXES = ("buchhaltung", "rechnungen", "kreditoren")
_NL_JOBS = (
    ("Boekhouder", ACCOUNTANT), ("Financieel directeur", PAYER), ("Crediteurenadministratie", PAYER),
    ("Inkoper", PURCHASER), ("Algemeen directeur", NO_HINT), ("Vestigingsmanager", NO_HINT),
    ("Verkoop", SALES),
)
_NL_BOXES = ("boekhouding", "facturen", "crediteuren")
_CH_LAST = (
    "Müller", "Meier", "Schmid", "Keller", "Weber", "Huber", "Schneider", "Meyer", "Steiner",
    "Fischer", "Gerber", "Brunner", "Baumann", "Frei", "Zürcher", "Moser", "Widmer", "Gasser",
)
_CH_FR_LAST = ("Favre", "Rochat", "Bonvin", "Rey", "Chappuis", "Perret", "Cuénod", "Jaquet", "Python")

MARKETS: tuple[Market, ...] = (
    Market(
        "FR", "fr_FR", 58, "EUR", ("fr", "fr", "com"), _FR_FIRST, _FR_LAST, _FR_ACTIVITIES,
        _FR_PATTERNS, ("SAS", "SAS", "SARL", "SARL", "SA", "EURL", "SASU"), _FR_JOBS, _FR_BOXES,
        ("01 ## ## ## ##", "02 ## ## ## ##", "03 ## ## ## ##", "04 ## ## ## ##",
         "05 ## ## ## ##", "06 ## ## ## ##", "+33 1 ## ## ## ##"),
    ),
    Market(
        "BE", "fr_BE", 6, "EUR", ("be",), _FR_FIRST, _BE_LAST, _FR_ACTIVITIES, _FR_PATTERNS,
        ("SRL", "SA", "SC"), _FR_JOBS, _FR_BOXES, ("+32 2 ### ## ##", "+32 4## ## ## ##"),
    ),
    Market(
        "BE", "nl_BE", 5, "EUR", ("be",), _BE_NL_FIRST, _BE_LAST,
        ("Bouw", "Transport", "Bakkerij", "Drukkerij", "Techniek", "Logistiek"),
        ("{n} {a}", "{a} {n}"), ("BV", "NV"), _NL_JOBS, _NL_BOXES,
        ("+32 3 ### ## ##", "+32 9 ### ## ##", "+32 47# ## ## ##"),
    ),
    Market(
        "DE", "de_DE", 8, "EUR", ("de",), _DE_FIRST, _DE_LAST, _DE_ACTIVITIES,
        ("{n} {a}", "{a} {n}", "{n} & Söhne"), ("GmbH", "GmbH", "GmbH & Co. KG", "AG", "KG"),
        _DE_JOBS, _DE_BOXES, ("+49 30 #######", "+49 89 #######", "+49 40 ########"),
    ),
    Market(
        "NL", "nl_NL", 6, "EUR", ("nl",),
        ("Daan", "Sanne", "Joris", "Femke", "Bram", "Eva", "Ruud", "Marieke", "Sem", "Anouk"),
        ("de Vries", "Jansen", "de Jong", "van den Berg", "Bakker", "Visser", "Smit", "Meijer",
         "de Boer", "Mulder", "van Dijk", "Bos", "Vos", "Dekker"),
        ("Bouw", "Transport", "Installatietechniek", "Groothandel", "Logistiek", "Metaal"),
        ("{n} {a}", "{a} {n}"), ("B.V.", "B.V.", "N.V."), _NL_JOBS, _NL_BOXES,
        ("+31 20 ### ####", "+31 10 ### ####", "+31 6 ########"),
    ),
    Market(
        "CH", "de_CH", 4, "CHF", ("ch",),
        ("Reto", "Urs", "Beat", "Corinne", "Matthias", "Daniela", "Lukas", "Regula", "Jürg", "Nadja"),
        _CH_LAST, ("Maschinen", "Holzbau", "Elektro", "Treuhand", "Transporte", "Präzisionstechnik"),
        ("{n} {a}", "{a} {n}"), ("AG", "AG", "GmbH"), _DE_JOBS, _DE_BOXES,
        ("+41 44 ### ## ##", "+41 31 ### ## ##", "+41 79 ### ## ##"),
    ),
    Market(
        "CH", "fr_CH", 2, "CHF", ("ch",), _FR_FIRST, _CH_FR_LAST, _FR_ACTIVITIES, _FR_PATTERNS,
        ("SA", "Sàrl"), _FR_JOBS, _FR_BOXES, ("+41 22 ### ## ##", "+41 21 ### ## ##"),
    ),
    Market(
        "ES", "es_ES", 5, "EUR", ("es", "com"),
        ("José", "María", "Lucía", "Álvaro", "Inés", "Javier", "Carmen", "Raúl", "Sofía", "Andrés"),
        ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
         "Gómez", "Jiménez", "Muñoz", "Núñez", "Ibáñez"),
        ("Construcciones", "Transportes", "Distribuciones", "Talleres", "Suministros", "Panadería"),
        ("{a} {n}", "{a} {n} e Hijos"), ("S.L.", "S.L.", "S.A."),
        (("Contable", ACCOUNTANT), ("Director financiero", PAYER), ("Comprador", PURCHASER),
         ("Director general", NO_HINT), ("Jefe de planta", NO_HINT), ("Comercial", SALES)),
        ("contabilidad", "facturas", "administracion"), ("+34 91# ### ###", "+34 93# ### ###"),
    ),
    Market(
        "IT", "it_IT", 4, "EUR", ("it",),
        ("Giulia", "Marco", "Niccolò", "Francesca", "Luca", "Chiara", "Andrea", "Federica", "Matteo"),
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
         "Marino", "Greco", "Bruno", "Gallo", "De Luca"),
        ("Costruzioni", "Trasporti", "Meccanica", "Forniture", "Arredamenti", "Tipografia"),
        ("{n} {a}", "{a} {n}"), ("S.r.l.", "S.r.l.", "S.p.A."),
        (("Contabile", ACCOUNTANT), ("Direttore finanziario", PAYER), ("Responsabile acquisti", PURCHASER),
         ("Amministratore delegato", NO_HINT), ("Responsabile di stabilimento", NO_HINT),
         ("Commerciale", SALES)),
        ("amministrazione", "contabilita", "fatture"), ("+39 02 #### ####", "+39 06 #### ####"),
    ),
    Market(
        "LU", "fr_LU", 2, "EUR", ("lu",),
        ("Luc", "Marie", "Jean", "Tom", "Claude", "Anne", "Nico", "Sandra", "Carole"),
        ("Schmit", "Muller", "Weber", "Wagner", "Hoffmann", "Thill", "Kremer", "Reuter", "Hansen"),
        _FR_ACTIVITIES, _FR_PATTERNS, ("S.à r.l.", "S.A."), _FR_JOBS, _FR_BOXES,
        ("+352 26 ## ## ##", "+352 621 ### ###"),
    ),
)

# Letters NFKD does not decompose into ASCII.
_SPECIAL = str.maketrans({"ß": "ss", "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O"})


# fmt: on


@lru_cache(maxsize=8192)
def fold(text: str) -> str:
    """ASCII-fold and lower-case ``text``, keeping only letters, digits and single hyphens.

    ``"Lefèvre & Fils"`` → ``"lefevre-fils"``; cached because the vocabulary is small.
    """
    ascii_text = unicodedata.normalize("NFKD", text.translate(_SPECIAL)).encode("ascii", "ignore").decode()
    words = "".join(ch if ch.isalnum() else " " for ch in ascii_text.lower()).split()
    return "-".join(words)
