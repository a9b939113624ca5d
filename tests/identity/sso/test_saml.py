"""SAML 2.0 SP (issue 13 points 2, 6, 7, 9) against a real IdP: pysaml2's IdP side on loopback,
signing with RSA-SHA256 through xmlsec1."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from lxml import etree

from kanvaro.identity.sso.saml_schema import SAMLConfig
from tests.conftest import TenantFixture
from tests.identity.sso import saml_idp
from tests.identity.sso.saml_fixtures import (
    location_path,
    make_provider,
    post_acs,
    sign_in,
)
from tests.identity.sso.saml_idp import IdP, User

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture
async def saml_tenant(services, saml_client: httpx.AsyncClient) -> TenantFixture:
    from tests.conftest import new_tenant

    return await new_tenant(services, saml_client)


async def test_sp_initiated_sign_in_provisions_the_user_and_returns_to_the_local_path(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(saml_client, saml_tenant, saml_peer)
    email = f"ada-{uuid.uuid4().hex[:8]}@kanvaro.example"
    saml_peer.knobs.user = User(email, "Ada", "Lovelace", groups=("staff",))
    r, _ = await sign_in(saml_client, pid, "/projects?tab=mine")
    assert r.status_code == 303, r.text
    assert location_path(r) == "/projects?tab=mine"
    assert any(c.startswith("__Host-kanvaro_access=") for c in r.headers.get_list("set-cookie"))
    me = await saml_client.get("/api/v1/auth/me")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    assert me.json()["firstName"] == "Ada"


async def test_metadata_is_signed_and_publishes_the_next_certificate_during_rollover(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(saml_client, saml_tenant, saml_peer)
    r = await saml_client.get(f"/api/v1/sso/{pid}/saml/metadata")
    assert r.headers["content-type"].startswith("application/samlmetadata+xml")
    doc = etree.fromstring(r.content)
    assert doc.find(f"{{{DS}}}Signature") is not None
    assert len(doc.findall(f".//{{{MD}}}KeyDescriptor")) >= 1
    before = set(doc.itertext())
    signer = verify_signed_metadata(r.text)
    keys = await saml_client.get(
        f"/api/v1/sso/providers/{pid}/saml/keys", headers=saml_tenant.admin.headers
    )
    assert keys.json()["current"] == signer and keys.json()["next"] is None

    r = await saml_client.post(
        f"/api/v1/sso/providers/{pid}/saml/rollover",
        headers=saml_tenant.admin.headers,
        json={"step": "start"},
    )
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["next"] and status["next"] != status["current"]
    r = await saml_client.get(f"/api/v1/sso/{pid}/saml/metadata")
    certs = etree.fromstring(r.content).findall(
        f".//{{{MD}}}KeyDescriptor//{{{DS}}}X509Certificate"
    )
    assert len({c.text.strip() for c in certs}) == 2  # current and next
    assert verify_signed_metadata(r.text) == status["current"]  # still signed by the current

    # The IdP loads the new metadata; then we switch, and sign-in still works.
    saml_peer.register_sp(r.text)
    r = await saml_client.post(
        f"/api/v1/sso/providers/{pid}/saml/rollover",
        headers=saml_tenant.admin.headers,
        json={"step": "complete"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["current"] == status["next"] and r.json()["next"] is None
    r = await saml_client.get(f"/api/v1/sso/{pid}/saml/metadata")
    saml_peer.register_sp(r.text)
    assert set(etree.fromstring(r.content).itertext()) != before
    r, _ = await sign_in(saml_client, pid)
    assert r.status_code == 303, r.text


def verify_signed_metadata(xml: str) -> str:
    """The metadata's signature verifies (xmlsec, through python3-saml's helper) with the
    certificate it carries; that certificate's SHA-256 fingerprint is returned."""
    from onelogin.saml2.utils import OneLogin_Saml2_Utils

    from kanvaro.identity.sso import saml_keys

    doc = etree.fromstring(xml.encode())
    cert = OneLogin_Saml2_Utils.format_cert(
        doc.find(f"{{{DS}}}Signature//{{{DS}}}X509Certificate").text
    )
    assert OneLogin_Saml2_Utils.validate_metadata_sign(xml, cert, raise_exceptions=True)
    # A document changed after signing no longer verifies.
    tampered = xml.replace("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", "urn:x", 1)
    assert not OneLogin_Saml2_Utils.validate_metadata_sign(tampered, cert)
    return saml_keys.fingerprint(cert)


async def test_return_path_is_local_only(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(saml_client, saml_tenant, saml_peer)
    for evil in ("https://evil.example/x", "//evil.example", "/\\evil.example", "javascript:x"):
        r, _ = await sign_in(saml_client, pid, evil)
        assert r.status_code == 303, r.text
        assert location_path(r) == "/", evil


async def test_idp_initiated_is_off_by_default_and_works_when_enabled(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(saml_client, saml_tenant, saml_peer)
    metadata = (await saml_client.get(f"/api/v1/sso/{pid}/saml/metadata")).text
    entity = etree.fromstring(metadata.encode()).get("entityID")
    acs = f"http://localhost:8000/api/v1/sso/{pid}/saml/acs"
    unsolicited = saml_peer.make_response(entity, acs, in_response_to=None)
    r = await post_acs(saml_client, pid, {"SAMLResponse": unsolicited, "RelayState": "/tasks"})
    assert r.status_code == 403, r.text
    assert "IdP-initiated" in r.json()["detail"]

    pid2 = await make_provider(saml_client, saml_tenant, saml_peer, allowIdpInitiated=True)
    metadata = (await saml_client.get(f"/api/v1/sso/{pid2}/saml/metadata")).text
    entity = etree.fromstring(metadata.encode()).get("entityID")
    acs = f"http://localhost:8000/api/v1/sso/{pid2}/saml/acs"
    unsolicited = saml_peer.make_response(entity, acs, in_response_to=None)
    r = await post_acs(saml_client, pid2, {"SAMLResponse": unsolicited, "RelayState": "/tasks"})
    assert r.status_code == 303, r.text
    assert location_path(r) == "/tasks"
    # RelayState from an IdP is still only a local path.
    unsolicited = saml_peer.make_response(entity, acs, in_response_to=None)
    r = await post_acs(
        saml_client, pid2, {"SAMLResponse": unsolicited, "RelayState": "https://evil.example"}
    )
    assert location_path(r) == "/"


async def test_group_mapping_sets_the_role(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(
        saml_client, saml_tenant, saml_peer, roleMapping={"pm": "project_manager"}
    )
    saml_peer.knobs.user = User(f"pm-{uuid.uuid4().hex[:8]}@kanvaro.example", groups=("pm", "x"))
    r, _ = await sign_in(saml_client, pid)
    assert r.status_code == 303, r.text
    me = await saml_client.get("/api/v1/auth/me")
    assert me.json()["role"] == "project_manager", me.json()


async def test_metadata_import_from_xml_fills_the_idp_fields(saml_peer: IdP) -> None:
    cfg = SAMLConfig.model_validate({"idpMetadataXml": saml_peer.metadata_xml()})
    assert cfg.entry_point == saml_peer.sso_url
    assert cfg.idp_entity_id == saml_peer.entity_id
    assert cfg.logout_url == saml_peer.slo_url
    assert cfg.cert and cfg.cert in saml_peer.cert_pem().replace("\n", "")
    # explicit fields win over the document
    cfg = SAMLConfig.model_validate(
        {"idpMetadataXml": saml_peer.metadata_xml(), "entryPoint": "https://saml_peer.example/sso"}
    )
    assert cfg.entry_point == "https://saml_peer.example/sso"


async def test_bad_config_is_a_422_naming_the_field(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture
) -> None:
    for config, field in (
        ({"idpMetadataXml": "<not-metadata/>"}, "config.idpMetadataXml"),
        (
            {"idpMetadataXml": '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'},
            "config.idpMetadataXml",
        ),
        (
            {"entryPoint": "https://i/sso", "idpEntityId": "https://i", "cert": "nope"},
            "config.cert",
        ),
        (
            {"entryPoint": "ftp://i/sso", "idpEntityId": "https://i", "cert": "x"},
            "config.entryPoint",
        ),
    ):
        r = await saml_client.post(
            "/api/v1/sso/providers",
            headers=saml_tenant.admin.headers,
            json={
                "providerType": "saml",
                "name": f"bad {field}",
                "enabled": True,
                "config": config,
            },
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in {e["field"] for e in r.json()["errors"]}, r.json()


async def test_sp_private_key_is_encrypted_at_rest_and_never_shown(
    services, saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    from sqlalchemy import text

    pid = await make_provider(saml_client, saml_tenant, saml_peer)
    r = await saml_client.get(f"/api/v1/sso/providers/{pid}", headers=saml_tenant.admin.headers)
    assert "PRIVATE KEY" not in r.text
    async with services.db.session(all_tenants=True) as db:
        row = (
            await db.execute(
                text("SELECT config, secrets_encrypted FROM sso_providers WHERE id = :id"),
                {
                    "id": uuid.UUID(pid)
                    if services.db.dialect == "postgresql"
                    else pid.replace("-", "")
                },
            )
        ).one_or_none()
    assert row is not None
    assert "PRIVATE KEY" not in str(row[0]) and "PRIVATE KEY" not in str(row[1])
    assert str(row[1]).startswith("kv1:")


async def test_authn_context_decides_idp_mfa(
    services, saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(saml_client, saml_tenant, saml_peer, requireIdpMfa=True)
    r, _ = await sign_in(saml_client, pid)  # the IdP says: password only
    assert r.status_code == 403, r.text
    saml_peer.knobs.authn_class = saml_idp.MFA
    r, _ = await sign_in(saml_client, pid)
    assert r.status_code == 303, r.text


async def test_idp_initiated_single_logout_ends_the_session(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(saml_client, saml_tenant, saml_peer)
    email = f"slo-{uuid.uuid4().hex[:8]}@kanvaro.example"
    saml_peer.knobs.user = User(email)
    r, _ = await sign_in(saml_client, pid)
    assert r.status_code == 303, r.text
    index = saml_peer.last_session_index()
    assert (await saml_client.get("/api/v1/auth/me")).status_code == 200

    metadata = (await saml_client.get(f"/api/v1/sso/{pid}/saml/metadata")).text
    entity = etree.fromstring(metadata.encode()).get("entityID")
    # Unsigned: refused, nothing ends.
    query = saml_peer.logout_request_query(entity, pid, email, index, sign=False)
    r = await saml_client.get(f"/api/v1/sso/{pid}/saml/slo", params=query)
    assert r.status_code == 403, r.text
    assert (await saml_client.get("/api/v1/auth/me")).status_code == 200
    # Signed by the IdP: the session ends, the IdP gets a signed LogoutResponse.
    query = saml_peer.logout_request_query(entity, pid, email, index, sign=True)
    r = await saml_client.get(f"/api/v1/sso/{pid}/saml/slo", params=query)
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(saml_peer.slo_url)
    assert "SAMLResponse=" in r.headers["location"] and "Signature=" in r.headers["location"]
    assert (await saml_client.get("/api/v1/auth/me")).status_code == 401


async def test_sp_initiated_logout_ends_the_session_and_sends_a_signed_request_to_the_idp(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(saml_client, saml_tenant, saml_peer)
    email = f"bye-{uuid.uuid4().hex[:8]}@kanvaro.example"
    saml_peer.knobs.user = User(email)
    r, _ = await sign_in(saml_client, pid)
    assert r.status_code == 303, r.text
    index = saml_peer.last_session_index()
    csrf = saml_client.cookies.get("__Host-kanvaro_csrf")
    r = await saml_client.post("/api/v1/auth/sso/saml/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    url = r.json()["logoutUrl"]
    assert url.startswith(saml_peer.slo_url) and "Signature=" in url
    assert (await saml_client.get("/api/v1/auth/me")).status_code == 401
    async with httpx.AsyncClient() as real:  # the IdP verifies our signature and reads it
        assert (await real.get(url)).status_code == 200
    seen = saml_peer.logout_requests[-1]
    assert seen["name_id"] == email and seen["session_indexes"] == [index]


def b64xml(b64: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(b64))
