"""What the big identity providers send that RFC 7644 does not quite say, made standard
before scim2-models reads it, and the application of a PATCH.

* Microsoft Entra ID removes group members with ``{"op": "Remove", "path": "members",
  "value": [{"value": "<id>"}]}``; RFC 7644 §3.5.2.2 selects them with a filter instead
  (``members[value eq "<id>"]``). Each listed member becomes one such remove.
* Okta renames a group with a path-less ``replace`` whose value repeats the group's ``id``.
  ``id`` is read-only: the same id is dropped, a different one stays and is refused.
* Entra's capitalised ``Replace``/``Add``/``Remove``, its ``"False"`` strings and its dotted
  keys in path-less values (``name.givenName``) are handled by scim2-models itself.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from scim2_models import InvalidValueException, SCIMException

from kanvaro.audit import service as audit
from kanvaro.identity.scim.validation import from_validation

MAX_OPERATIONS = 1000


def _member_removals(operation: dict[str, Any]) -> list[dict[str, Any]] | None:
    op = str(operation.get("op", "")).lower()
    path = operation.get("path")
    value = operation.get("value")
    if op != "remove" or not isinstance(path, str) or path.strip().lower() != "members":
        return None
    if not isinstance(value, list) or not value:
        return None
    removals = []
    for member in value:
        if not isinstance(member, dict) or not isinstance(member.get("value"), str):
            raise InvalidValueException(detail="members: each member needs a value (its id).")
        # json.dumps makes a valid SCIM string literal (RFC 7644 compValue is JSON).
        selector = f"members[value eq {json.dumps(member['value'])}]"
        removals.append({"op": "remove", "path": selector})
    return removals


def _without_own_id(operation: dict[str, Any], resource_id: str | None) -> dict[str, Any]:
    value = operation.get("value")
    own = isinstance(value, dict) and "id" in value and value["id"] == resource_id
    if operation.get("path") is None and own:
        return {**operation, "value": {k: v for k, v in value.items() if k != "id"}}
    return operation


def patch_body(body: Any, resource_id: str | None) -> Any:
    """The PATCH body with the providers' variants rewritten (anything else is left for the
    validation to judge)."""
    if not isinstance(body, dict):
        return body
    key = next((k for k in body if k.lower() == "operations"), None)
    operations = body.get(key) if key else None
    if not isinstance(operations, list):
        return body
    if len(operations) > MAX_OPERATIONS:
        raise InvalidValueException(detail=f"At most {MAX_OPERATIONS} operations per PATCH.")
    rewritten: list[Any] = []
    for operation in operations:
        if not isinstance(operation, dict):
            rewritten.append(operation)
            continue
        removals = _member_removals(operation)
        if removals is not None:
            rewritten.extend(removals)
        else:
            rewritten.append(_without_own_id(operation, resource_id))
    return {**body, key: rewritten}


def apply_patch(operations: Any, resource: Any) -> None:
    """Apply a validated ``PatchOp`` to the resource as SCIM sees it (in memory)."""
    try:
        operations.patch(resource)
    except SCIMException:
        raise
    except ValidationError as exc:
        raise from_validation(exc) from None
    except (ValueError, TypeError) as exc:
        raise InvalidValueException(
            detail=f"The patch cannot be applied: {type(exc).__name__}."
        ) from None


def diff(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    return audit.diff(before, after)
