"""JSON Schema of a config file, so editors (YAML language server) complete and check the YAML."""

from __future__ import annotations

from dunningops.spec.models import ConfigFile


def json_schema() -> dict:
    schema = ConfigFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
