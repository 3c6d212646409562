"""Recipes as plain data: a strict pydantic model that round-trips YAML, saved beside every artifact it made.

Unknown keys are errors, so a typo in a recipe file never passes silently; a bad field is one line naming it.
"""

from __future__ import annotations

from typing import ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import QresafeError


class StrictRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    error: ClassVar[type[QresafeError]] = QresafeError  # raised, with its one line, for a bad recipe
    what: ClassVar[str] = "recipe"  # how the one line names the recipe

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str):
        try:
            return cls.model_validate(yaml.safe_load(text))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise cls.error(f"{cls.what} field {'.'.join(map(str, first['loc']))!r}: {first['msg']}") from None
