"""The SSO settings form read off the config schemas: every setting has a field, the stored
config survives a round trip through the form unchanged, and the text rules (empty fields,
lines, 'group = role' pairs with '=' in the group) hold."""

from __future__ import annotations

import pytest

from kanvaro.errors import Unprocessable
from kanvaro.identity.sso.schemas import OAuth2Config, ProviderConfigBase, config_schemas
from kanvaro.web.console.admin import config_form
from kanvaro.web.console.admin.sso import config_fields


@pytest.mark.parametrize("provider_type", sorted(config_schemas()))
def test_every_setting_but_the_secret_has_a_field(provider_type):
    schema = config_schemas()[provider_type]
    keys = {f.key.split(".")[0] for f in config_fields(provider_type)}
    expected = {(f.alias or n) for n, f in schema.model_fields.items()} - set(schema.SECRET_FIELDS)
    assert keys == expected


def test_a_stored_config_survives_the_form_unchanged():
    stored = OAuth2Config.model_validate(
        {
            "clientId": "kv",
            "authorizationURL": "https://idp.example/authorize",
            "tokenURL": "https://idp.example/token",
            "userInfoURL": "https://idp.example/user",
            "firstNameField": "",  # allowed by the schema: no first name from this IdP
            "emailVerifiedField": None,
            "roleMapping": {"CN=Admins,OU=Groups,DC=example,DC=com": "admin"},
            "domains": ["example.com"],
            "scopes": ["read:user", "user:email"],
            "jitProvisioning": False,
        }
    ).model_dump(mode="json", by_alias=True)
    stored.pop("clientSecret")
    fields = config_fields("oauth2")
    text = config_form.form_values(fields, stored)
    again = OAuth2Config.model_validate(config_form.object_from(fields, text))
    assert again.model_dump(mode="json", by_alias=True, exclude={"client_secret"}) == stored


def test_empty_fields_and_malformed_text():
    fields = config_form.form_fields(OAuth2Config, shared=ProviderConfigBase)
    assert fields[0].required  # required first
    out = config_form.object_from(
        fields,
        {
            "config.clientId": "",  # required: missing, the schema names it
            "config.emailVerifiedField": "",  # may be null: none
            "config.lastNameField": "",  # has a default: the empty string
            "config.scopes": "\n a \n\n b ",
        },
    )
    assert "clientId" not in out and "emailVerifiedField" not in out
    assert out["lastNameField"] == "" and out["scopes"] == ["a", "b"]
    assert out["jitProvisioning"] is False  # an unticked box
    for text, field in (
        ({"config.roleMapping": "no equals sign"}, "config.roleMapping"),
        ({"config.roleMapping": "group ="}, "config.roleMapping"),
    ):
        with pytest.raises(Unprocessable) as refused:
            config_form.object_from(fields, text)
        assert refused.value.errors[0]["field"] == field
    saml = config_fields("saml")
    with pytest.raises(Unprocessable) as refused:
        config_form.object_from(saml, {"config.clockSkewSeconds": "soon"})
    assert refused.value.errors[0]["field"] == "config.clockSkewSeconds"
    nested = config_form.object_from(saml, {"config.attributeMapping.email": "mail"})
    assert nested["attributeMapping"]["email"] == "mail"


def test_a_refusal_belongs_to_its_field():
    fields = config_fields("oidc")
    found = config_form.messages(fields, {"config.domains.0": "not a domain", "name": "taken"})
    assert found == {"config.domains": "not a domain"}
