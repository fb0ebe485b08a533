"""Column mappings: how an accounting system's export names our columns, and how it writes values.

A mapping file (YAML) lets an export import as it is, without editing it:

    # sage-invoices.yaml
    columns: {external_id: "N° pièce", customer_external_id: "Compte", due_date: "Échéance", amount: "TTC"}
    date_format: "%d/%m/%Y"
    decimal_comma: true
    delimiter: ";"
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dunningops.errors import DunningOpsError


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, str] = Field(default_factory=dict, description="our column name → the file's column name")
    date_format: str | None = Field(None, description="strptime format; default ISO 8601 (YYYY-MM-DD)")
    decimal_comma: bool = Field(False, description="amounts written 1 234,50")
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"

    def source(self, column: str) -> str:
        return self.columns.get(column, column)


def load_mapping(path: Path | None) -> Mapping:
    if path is None:
        return Mapping()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Mapping.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise DunningOpsError(f"{path}: cannot read the mapping: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DunningOpsError(f"{path}: {where}: {first['msg']}") from exc
