"""Hostile SAML answers the ACS must refuse (issue 13 point 9): a tampered assertion,
signature wrapping (XSW), the wrong audience, an expired or replayed assertion, SHA-1, an
unsigned assertion, an answer to another browser's request. Each starts from a real
response of the pysaml2 IdP; each refusal is a 403 problem naming the check in words, and
leaves the browser signed out."""

from __future__ import annotations

import base64
import copy
import uuid

import httpx
import pytest
from lxml import etree

from tests.conftest import TenantFixture, new_tenant
from tests.identity.sso import saml_idp
from tests.identity.sso.saml_fixtures import (
    idp_answer,
    make_provider,
    post_acs,
    sign_in,
    start,
)
from tests.identity.sso.saml_idp import IdP, User

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture
async def saml_tenant(services, saml_client: httpx.AsyncClient) -> TenantFixture:
    return await new_tenant(services, saml_client)


@pytest.fixture
async def pid(saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP) -> str:
    return await make_provider(saml_client, saml_tenant, saml_peer)


def _xml(b64: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(b64))


def _b64(doc: etree._Element) -> str:
    return base64.b64encode(etree.tostring(doc)).decode()


async def _refused(client: httpx.AsyncClient, pid: str, form: dict[str, str], words: str) -> None:
    r = await post_acs(client, pid, form)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"], r.json()["detail"]
    assert "SAMLResponse" not in r.text and "BEGIN" not in r.text
    assert not any(c.startswith("__Host-kanvaro_access=") for c in r.headers.get_list("set-cookie"))


async def test_tampered_attribute_breaks_the_signature(
    saml_client: httpx.AsyncClient, pid: str
) -> None:
    form = await idp_answer(await start(saml_client, pid))
    doc = _xml(form["SAMLResponse"])
    value = doc.find(f".//{{{SAML}}}Attribute[@Name='user.email']/{{{SAML}}}AttributeValue")
    value.text = "ceo@kanvaro.example"
    await _refused(saml_client, pid, {**form, "SAMLResponse": _b64(doc)}, "signature")


async def test_tampered_nameid_breaks_the_signature(
    saml_client: httpx.AsyncClient, pid: str
) -> None:
    form = await idp_answer(await start(saml_client, pid))
    doc = _xml(form["SAMLResponse"])
    doc.find(f".//{{{SAML}}}Subject/{{{SAML}}}NameID").text = "ceo@kanvaro.example"
    await _refused(saml_client, pid, {**form, "SAMLResponse": _b64(doc)}, "signature")


async def test_xsw_evil_assertion_before_the_signed_one(
    saml_client: httpx.AsyncClient, pid: str
) -> None:
    """XSW #3-style: an unsigned forged assertion inserted before the genuine signed one."""
    form = await idp_answer(await start(saml_client, pid))
    doc = _xml(form["SAMLResponse"])
    signed = doc.find(f"{{{SAML}}}Assertion")
    evil = copy.deepcopy(signed)
    evil.set("ID", "_evil" + uuid.uuid4().hex)
    evil.remove(evil.find(f"{{{DS}}}Signature"))
    evil.find(f".//{{{SAML}}}NameID").text = "ceo@kanvaro.example"
    signed.addprevious(evil)
    await _refused(saml_client, pid, {**form, "SAMLResponse": _b64(doc)}, "exactly one assertion")


async def test_xsw_signed_assertion_wrapped_inside_the_evil_one(
    saml_client: httpx.AsyncClient, pid: str
) -> None:
    """XSW #7/#8-style: the genuine assertion hidden inside the forged one's Signature
    (Object), so a naive verifier finds a valid signature while the reader takes the evil
    assertion."""
    form = await idp_answer(await start(saml_client, pid))
    doc = _xml(form["SAMLResponse"])
    signed = doc.find(f"{{{SAML}}}Assertion")
    evil = copy.deepcopy(signed)
    evil.find(f".//{{{SAML}}}NameID").text = "ceo@kanvaro.example"
    signature = evil.find(f"{{{DS}}}Signature")
    obj = etree.SubElement(signature, f"{{{DS}}}Object")
    original = copy.deepcopy(signed)
    obj.append(original)
    doc.replace(signed, evil)
    await _refused(saml_client, pid, {**form, "SAMLResponse": _b64(doc)}, "exactly one assertion")


async def test_xsw_response_with_the_assertion_in_extensions(
    saml_client: httpx.AsyncClient, pid: str
) -> None:
    """XSW #1/#2-style: the signed assertion moved into Extensions, an evil one in its place."""
    form = await idp_answer(await start(saml_client, pid))
    doc = _xml(form["SAMLResponse"])
    signed = doc.find(f"{{{SAML}}}Assertion")
    evil = copy.deepcopy(signed)
    evil.remove(evil.find(f"{{{DS}}}Signature"))
    evil.find(f".//{{{SAML}}}NameID").text = "ceo@kanvaro.example"
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    doc.replace(signed, evil)
    evil.addprevious(extensions)
    extensions.append(signed)
    await _refused(saml_client, pid, {**form, "SAMLResponse": _b64(doc)}, "exactly one assertion")


async def test_xsw_signature_of_another_id(saml_client: httpx.AsyncClient, pid: str) -> None:
    """One assertion only, carrying the genuine signature, but with its own ID: the signature
    then references an element that is not the assertion read."""
    form = await idp_answer(await start(saml_client, pid))
    doc = _xml(form["SAMLResponse"])
    assertion = doc.find(f"{{{SAML}}}Assertion")
    assertion.set("ID", "_evil" + uuid.uuid4().hex)
    assertion.find(f".//{{{SAML}}}NameID").text = "ceo@kanvaro.example"
    await _refused(saml_client, pid, {**form, "SAMLResponse": _b64(doc)}, "wrapping")


async def test_wrong_audience(saml_client: httpx.AsyncClient, pid: str, saml_peer: IdP) -> None:
    saml_peer.knobs.audience = "https://other-sp.example/metadata"
    form = await idp_answer(await start(saml_client, pid))
    await _refused(saml_client, pid, form, "audience")


async def test_expired_assertion(saml_client: httpx.AsyncClient, pid: str, saml_peer: IdP) -> None:
    saml_peer.knobs.lifetime_minutes = -10  # NotOnOrAfter ten minutes ago: beyond any skew
    form = await idp_answer(await start(saml_client, pid))
    await _refused(saml_client, pid, form, "expired")


async def test_replayed_assertion(saml_client: httpx.AsyncClient, pid: str) -> None:
    r, form = await sign_in(saml_client, pid)
    assert r.status_code == 303, r.text
    # The same answer again, with a fresh request of this browser: the request is spent,
    # and even a request with that ID could not make the assertion count twice.
    r = await post_acs(saml_client, pid, form)
    assert r.status_code == 403, r.text


async def test_replay_refused_even_with_a_live_request(
    services, saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    """IdP-initiated allowed: no request to spend, so only the seen-ID store stops a replay."""
    pid = await make_provider(saml_client, saml_tenant, saml_peer, allowIdpInitiated=True)
    meta = (await saml_client.get(f"/api/v1/sso/{pid}/saml/metadata")).text
    entity = etree.fromstring(meta.encode()).get("entityID")
    b64 = saml_peer.make_response(
        entity, f"http://localhost:8000/api/v1/sso/{pid}/saml/acs", in_response_to=None
    )
    r = await post_acs(saml_client, pid, {"SAMLResponse": b64})
    assert r.status_code == 303, r.text
    await _refused(saml_client, pid, {"SAMLResponse": b64}, "already used")


async def test_sha1_signature_refused(
    saml_client: httpx.AsyncClient, pid: str, saml_peer: IdP
) -> None:
    saml_peer.knobs.sign_alg, saml_peer.knobs.digest_alg = saml_idp.RSA_SHA1, saml_idp.SHA1
    form = await idp_answer(await start(saml_client, pid))
    await _refused(saml_client, pid, form, "SHA-1")


async def test_sha1_accepted_only_when_the_provider_allows_it(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(saml_client, saml_tenant, saml_peer, allowSha1=True)
    saml_peer.knobs.sign_alg, saml_peer.knobs.digest_alg = saml_idp.RSA_SHA1, saml_idp.SHA1
    r, _ = await sign_in(saml_client, pid)
    assert r.status_code == 303, r.text


async def test_unsigned_assertion_refused(
    saml_client: httpx.AsyncClient, pid: str, saml_peer: IdP
) -> None:
    saml_peer.knobs.sign_assertion = False
    saml_peer.knobs.sign_response = (
        True  # the response alone is signed; wantAssertionsSigned says no
    )
    form = await idp_answer(await start(saml_client, pid))
    await _refused(saml_client, pid, form, "not signed")


async def test_signature_stripped_refused(saml_client: httpx.AsyncClient, pid: str) -> None:
    form = await idp_answer(await start(saml_client, pid))
    doc = _xml(form["SAMLResponse"])
    for sig in doc.iter(f"{{{DS}}}Signature"):
        sig.getparent().remove(sig)
    await _refused(saml_client, pid, {**form, "SAMLResponse": _b64(doc)}, "not signed")


async def test_signed_by_another_key_refused(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    """A provider trusting another certificate: a genuine signature of the wrong key fails."""
    from datetime import UTC, datetime

    from kanvaro.identity.sso import saml_keys

    other = saml_keys.generate_pair("someone-else", datetime.now(UTC))["cert"]
    pid = await make_provider(saml_client, saml_tenant, saml_peer, cert=other)
    form = await idp_answer(await start(saml_client, pid))
    await _refused(saml_client, pid, form, "signature")


async def test_answer_started_in_another_browser_refused(
    saml_app, saml_client: httpx.AsyncClient, pid: str
) -> None:
    """Login CSRF: the attacker's own valid answer posted from the victim's browser."""
    form = await idp_answer(await start(saml_client, pid))
    transport = httpx.ASGITransport(app=saml_app, client=("198.51.100.4", 999))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as victim:
        await _refused(victim, pid, form, "expired or was already used")


async def test_issuer_of_another_idp_refused(
    saml_client: httpx.AsyncClient, saml_tenant: TenantFixture, saml_peer: IdP
) -> None:
    pid = await make_provider(
        saml_client, saml_tenant, saml_peer, idpEntityId="https://other-saml_peer.example"
    )
    form = await idp_answer(await start(saml_client, pid))
    await _refused(saml_client, pid, form, "issuer")


async def test_domain_not_allowed_refused(
    saml_client: httpx.AsyncClient, pid: str, saml_peer: IdP
) -> None:
    saml_peer.knobs.user = User(f"x-{uuid.uuid4().hex[:6]}@elsewhere.example")
    form = await idp_answer(await start(saml_client, pid))
    r = await post_acs(saml_client, pid, form)
    assert r.status_code == 403, r.text


async def test_garbage_is_a_problem_not_a_500(saml_client: httpx.AsyncClient, pid: str) -> None:
    for value in (
        "%%%",
        base64.b64encode(b"<x").decode(),
        base64.b64encode(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>").decode(),
    ):
        r = await post_acs(saml_client, pid, {"SAMLResponse": value})
        assert r.status_code in (400, 403), r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await saml_client.post(f"/api/v1/sso/{pid}/saml/acs", data={})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "SAMLResponse"
    r = await saml_client.post(f"/api/v1/sso/{uuid.uuid4()}/saml/acs", data={"SAMLResponse": "x"})
    assert r.status_code == 404
