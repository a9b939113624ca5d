"""The SCIM list filters we answer (RFC 7644 §3.4.2.2): ``attribute eq "value"`` for the few
attributes an identity provider looks people and groups up by. scim2-models parses the
filter (its grammar follows the RFC and its errata); anything but one such equality is a 400
``invalidFilter`` saying what is supported, never a silently wider or empty answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import CompareOperator, Comparison

MAX_FILTER_LENGTH = 1000


@dataclass(frozen=True)
class Equality:
    attribute: str  # as we name it: one of the keys of the ``supported`` map
    value: str


def parse_equality(text: str, resource: Any, supported: dict[str, str]) -> Equality:
    """``supported`` maps lower-cased SCIM attribute names (``username``) to ours."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilterException(detail="The filter is too long.")
    ast = ScimFilter[resource](text).ast  # raises InvalidFilterException on bad syntax
    wanted = " or ".join(f'{name} eq "..."' for name in supported.values())
    refusal = InvalidFilterException(detail=f"Only these filters are supported: {wanted}.")
    if not isinstance(ast, Comparison) or ast.op is not CompareOperator.eq:
        raise refusal
    path = ast.attr_path
    core = getattr(resource, "__schema__", None)
    if path.sub_attr is not None or (path.uri is not None and str(path.uri) != str(core)):
        raise refusal
    name = supported.get(path.attr.lower())
    if name is None or not isinstance(ast.value, str):
        raise refusal
    return Equality(name, ast.value)
