"""Validating a connection side's settings and credentials against its plugin's schemas.

Error messages name the side, the system and the field, and never repeat the value given: a
mistyped password must not end up in a terminal's scrollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr, ValidationError

from ml_connector.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FieldSpec", "describe_fields", "validate_section"]


@dataclass(frozen=True)
class FieldSpec:
    """One field of a settings or credentials schema, as a prompt needs it."""

    name: str
    secret: bool
    required: bool
    description: str | None


def describe_fields(model: type[BaseModel]) -> list[FieldSpec]:
    """List a schema's fields in declaration order, marking the secret ones."""
    return [
        FieldSpec(
            name=name,
            secret=field.annotation is SecretStr or "SecretStr" in str(field.annotation),
            required=field.is_required(),
            description=field.description,
        )
        for name, field in model.model_fields.items()
    ]


def _explain(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "(whole object)"
        parts.append(f"field '{where}': {item['msg']}")
    return "; ".join(parts)


def validate_section(model: type[BaseModel], data: Mapping[str, Any], label: str) -> BaseModel:
    """Validate one section (e.g. the source's credentials) against a plugin's schema.

    Args:
        model: The plugin's settings or credentials model.
        data: The raw values.
        label: What the section is, for the message, e.g. ``"source credentials (acumatica)"``.

    Returns:
        The validated model instance.

    Raises:
        ConfigurationError: Naming every bad or missing field, without their values.
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigurationError(f"{label}: {_explain(exc)}") from None
