"""The SAML protocol checks on their own (no database): ``saml_acs.validate`` against real
responses of the pysaml2 IdP, with the clock injected."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kanvaro.identity.sso import saml, saml_acs, saml_keys
from kanvaro.identity.sso.saml_acs import SamlRefused
from kanvaro.identity.sso.saml_schema import SAMLConfig
from tests.identity.sso import saml_idp
from tests.identity.sso.saml_idp import IdP

SKEW = timedelta(seconds=60)


def _provider(saml_peer: IdP, **config: object) -> saml.SamlProvider:
    cfg = SAMLConfig.model_validate(
        {"idpMetadataXml": saml_peer.metadata_xml(), "attributeMapping": saml_idp.MAPPING, **config}
    )
    pid = uuid.uuid4()
    view = saml.SamlProvider(
        pid,
        uuid.uuid4(),
        cfg,
        saml_keys.initial_secrets(),
        saml.Endpoints.of("https://kanvaro.example", pid),
    )
    saml_peer.register_sp(saml.metadata(view))
    return view


async def _answer(view: saml.SamlProvider) -> tuple[str, str]:
    redirect = saml.login_redirect(view, "/")
    async with httpx.AsyncClient() as real:
        page = await real.get(redirect.url)
    assert page.status_code == 200, page.text
    return saml_idp.read_form(page.text)["SAMLResponse"], redirect.request_id


async def test_valid_answer_maps_the_attributes(saml_peer: IdP) -> None:
    view = _provider(saml_peer)
    saml_peer.knobs.user = saml_idp.User("grace@kanvaro.example", "Grace", "Hopper", ("eng", "ops"))
    b64, request_id = await _answer(view)
    found = saml_acs.validate(view, b64, request_id=request_id, now=datetime.now(UTC), skew=SKEW)
    assert (found.email, found.first_name, found.last_name) == (
        "grace@kanvaro.example",
        "Grace",
        "Hopper",
    )
    assert found.groups == ("eng", "ops")
    assert found.subject == "grace@kanvaro.example"
    assert found.session_index == saml_peer.last_session_index()
    assert not found.mfa_asserted
    assert "grace" not in repr(found)


async def test_mfa_authn_context(saml_peer: IdP) -> None:
    view = _provider(saml_peer)
    saml_peer.knobs.authn_class = saml_idp.MFA
    b64, request_id = await _answer(view)
    found = saml_acs.validate(view, b64, request_id=request_id, now=datetime.now(UTC), skew=SKEW)
    assert found.mfa_asserted


async def test_in_response_to_must_be_the_request_of_this_browser(saml_peer: IdP) -> None:
    view = _provider(saml_peer)
    b64, _ = await _answer(view)
    with pytest.raises(SamlRefused, match="does not answer the request"):
        saml_acs.validate(view, b64, request_id="ONELOGIN_other", now=datetime.now(UTC), skew=SKEW)
    with pytest.raises(SamlRefused, match="IdP-initiated"):
        saml_acs.validate(view, b64, request_id=None, now=datetime.now(UTC), skew=SKEW)
    allowing = _provider(saml_peer, allowIdpInitiated=True)
    b64, _ = await _answer(allowing)
    with pytest.raises(SamlRefused, match="did not send"):
        saml_acs.validate(allowing, b64, request_id=None, now=datetime.now(UTC), skew=SKEW)


async def test_time_window_uses_the_injected_clock_with_a_small_skew(saml_peer: IdP) -> None:
    view = _provider(saml_peer)
    saml_peer.knobs.lifetime_minutes = 5
    b64, request_id = await _answer(view)
    now = datetime.now(UTC)
    # Within the skew of the window: accepted.
    saml_acs.validate(view, b64, request_id=request_id, now=now + timedelta(minutes=5), skew=SKEW)
    with pytest.raises(SamlRefused, match="expired"):
        saml_acs.validate(
            view, b64, request_id=request_id, now=now + timedelta(minutes=7), skew=SKEW
        )
    with pytest.raises(SamlRefused, match="not valid yet"):
        saml_acs.validate(
            view, b64, request_id=request_id, now=now - timedelta(minutes=3), skew=SKEW
        )


async def test_destination_of_another_sp_refused(saml_peer: IdP) -> None:
    view = _provider(saml_peer)
    b64, request_id = await _answer(view)
    moved = saml.SamlProvider(
        view.id,
        view.tenant_id,
        view.config.model_copy(update={"issuer": view.entity_id}),
        view.secrets,
        saml.Endpoints.of("https://elsewhere.example", view.id),
    )
    with pytest.raises(SamlRefused, match=r"Destination|subject confirmation"):
        saml_acs.validate(moved, b64, request_id=request_id, now=datetime.now(UTC), skew=SKEW)


def test_local_paths_only() -> None:
    from kanvaro.identity.sso.saml_login import local_path

    assert local_path("/projects?x=1") == "/projects?x=1"
    for bad in ("//evil", "/\\evil", "https://evil", "evil", "/a\nb", "/a b", "", None, "/" * 2000):
        assert local_path(bad) is None, bad
