"""What a SCIM client reads to learn what we support (RFC 7644 §4): the service provider
configuration, the schemas and the resource types, built by scim2-models from the same
models the endpoints validate with, so they cannot drift apart."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    ListResponse,
    Meta,
    NotFoundException,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
    User,
)

MAX_RESULTS = 200  # the largest page ``count`` may ask for
_QUERY = Context.RESOURCE_QUERY_RESPONSE


def _meta(base: str, kind: str, name: str) -> Meta:
    return Meta(resource_type=kind, location=f"{base}/{kind}s/{name}")


def service_provider_config(base: str, docs_url: str | None) -> dict[str, Any]:
    config = ServiceProviderConfig(
        documentation_uri=docs_url,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type="oauthbearertoken",
                name="Bearer token",
                description="A per-organization SCIM token (Authorization: Bearer kvscim_...), "
                "issued by an admin under /api/v1/admin/scim/tokens.",
                primary=True,
            )
        ],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{base}/ServiceProviderConfig"),
    )
    return config.model_dump(scim_ctx=_QUERY)


def _schemas(base: str) -> list[Schema]:
    out = []
    for model in (User, EnterpriseUser, Group):
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema", location=f"{base}/Schemas/{schema.id}")
        out.append(schema)
    return out


def _resource_types(base: str) -> list[ResourceType]:
    out = []
    for model in (User[EnterpriseUser], Group):
        resource_type = ResourceType.from_resource(model)
        resource_type.meta = _meta(base, "ResourceType", str(resource_type.id))
        out.append(resource_type)
    return out


def _listing(kind: Any, items: list[Any]) -> dict[str, Any]:
    page = ListResponse[kind](
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return page.model_dump(scim_ctx=_QUERY)


def _one(items: list[Any], wanted: str, what: str) -> dict[str, Any]:
    for item in items:
        if str(item.id) == wanted:
            return item.model_dump(scim_ctx=_QUERY)
    raise NotFoundException(detail=f"No such {what}.")


def schemas(base: str) -> dict[str, Any]:
    return _listing(Schema, _schemas(base))


def schema(base: str, schema_id: str) -> dict[str, Any]:
    return _one(_schemas(base), schema_id, "schema")


def resource_types(base: str) -> dict[str, Any]:
    return _listing(ResourceType, _resource_types(base))


def resource_type(base: str, name: str) -> dict[str, Any]:
    return _one(_resource_types(base), name, "resource type")
