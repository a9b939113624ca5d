"""A request body read into a scim2-models model, every refusal a SCIM error (RFC 7644
§3.12) that names the attribute and never echoes the value (it may be a password)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError
from scim2_models import Context, InvalidValueException, SCIMException

T = TypeVar("T")

# pydantic's own error types that mean "wrong JSON type or shape", not a wrong value
_SYNTAX = {"model_type", "dict_type", "list_type", "missing", "extra_forbidden"}


def scim_invalid(detail: str) -> InvalidValueException:
    return InvalidValueException(detail=detail)


def _attribute(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int)) or "body"


def from_validation(exc: ValidationError) -> SCIMException:
    """The first error of a failed validation as a SCIM error: scim2-models raises its own
    kinds (``scim_invalidValue``, ``scim_mutability``...) through pydantic."""
    first = exc.errors(include_input=False, include_url=False)[0]
    kind = str(first.get("type", ""))
    ctx = first.get("ctx") or {}
    attribute = _attribute(tuple(first.get("loc", ())))
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind.startswith("scim_") and isinstance(ctx.get("scim_type"), str):
        error = SCIMException(detail=f"{attribute}: {message}")
        error.status = int(ctx.get("status", 400))
        error.scim_type = ctx["scim_type"]
        return error
    if kind == "missing":
        return InvalidValueException(detail=f"{attribute} is required.")
    return InvalidValueException(detail=f"{attribute}: {message}")


def validated(model: type[T], body: Any, scim_ctx: Context) -> T:
    if not isinstance(body, dict):
        raise InvalidValueException(detail="The body must be a JSON object.")
    try:
        return model.model_validate(body, scim_ctx=scim_ctx)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise from_validation(exc) from None
