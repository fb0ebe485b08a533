"""Column mappings: how an accounting system's export names our columns, and how it writes values.

A mapping file (YAML) lets an export import as it is, without editing it:

    # sage-invoices.yaml
    columns: {external_id: "N° pièce", customer_external_id: "Compte", due_date: "Échéance", amount: "TTC"}
    date_format: "%d/%m/%Y"
    decimal_comma: true
    delimiter: ";"
"""

from __future__ import annotations

import codecs
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dunningops.errors import InvalidInputError

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass(frozen=True)
class Mapping:
    """How a file names our columns and writes its values (default: our names, ISO dates, UTF-8).

    A plain dataclass, so that an import without a mapping file does not load pydantic and YAML
    (a tenth of a small import's time); a mapping file is checked by ``_MappingFile``.
    """

    columns: dict[str, str] = field(default_factory=dict)  # our column name → the file's column name
    date_format: str | None = None  # strptime format; default ISO 8601 (YYYY-MM-DD)
    decimal_comma: bool = False  # amounts written 1 234,50
    delimiter: str = ","
    encoding: str = "utf-8-sig"

    def source(self, column: str) -> str:
        return self.columns.get(column, column)


def _mapping_file_model() -> type[BaseModel]:
    """The mapping file's pydantic model (extra keys forbidden), built on first use."""
    from pydantic import BaseModel, ConfigDict, Field, field_validator

    class MappingFile(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        columns: dict[str, str] = Field(default_factory=dict, description="our column name → the file's column name")
        date_format: str | None = Field(default=None, description="strptime format; default ISO 8601 (YYYY-MM-DD)")
        decimal_comma: bool = Field(default=False, description="amounts written 1 234,50")
        delimiter: str = Field(default=",", min_length=1, max_length=1)
        encoding: str = "utf-8-sig"

        @field_validator("encoding")
        @classmethod
        def _known_encoding(cls, value: str) -> str:
            # Checked here, not when the file is opened, so the error names the mapping file and the key.
            try:
                info = codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, utf-8-sig, latin-1, cp1252)") from None
            if not getattr(info, "_is_text_encoding", True):  # rot13, base64: codecs, but not for text files
                raise ValueError(f"{value!r} is not a text encoding (e.g. utf-8, utf-8-sig, latin-1, cp1252)")
            return value

        @field_validator("delimiter")
        @classmethod
        def _usable_delimiter(cls, value: str) -> str:
            if value in ('"', "\r", "\n"):
                raise ValueError(f"{value!r} cannot separate columns (a quote or a line break)")
            return value

    return MappingFile


def load_mapping(path: Path | None) -> Mapping:
    """The mapping in ``path`` (none: our own column names, ISO dates, UTF-8); every problem names the file and key."""
    if path is None:
        return Mapping()
    import yaml
    from pydantic import ValidationError

    model = _mapping_file_model()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the mapping: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: the mapping is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise InvalidInputError(f"{path}: {where}not valid YAML ({getattr(exc, 'problem', None) or exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a mapping file holds keys (columns, date_format, decimal_comma, delimiter, encoding)")
    try:
        checked = model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(error["loc"][0]), list(model.model_fields), n=1)
                known = ", ".join(model.model_fields)
                message = f"unknown key; did you mean {close[0]!r}?" if close else f"unknown key (expected one of: {known})"
            lines.append(f"{path}: {where}: {message}" if where else f"{path}: {message}")
        raise InvalidInputError("\n".join(lines)) from exc
    return Mapping(**checked.model_dump())
