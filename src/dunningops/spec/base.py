"""What every config model shares: the base class (unknown keys are errors, values frozen) and the
words used to describe a sender reference."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SENDERS = "alias.<id>, account_manager or member.<id>"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)
