"""The assertion consumer service's checks (SAML 2.0 core §3.4, profiles §4.1.4.3), on
python3-saml in strict mode, plus what the library leaves to its caller:

* the signature, as the provider says (``wantAssertionsSigned`` / ``wantResponseSigned``),
  and never none at all; the library verifies it with xmlsec against the configured IdP
  certificates only (KeyInfo in the message is not trusted), and it refuses more than one
  assertion and a signature that does not cover the assertion it reads (the XSW defences);
* SHA-1 refused unless the provider allows it (``rejectDeprecatedAlgorithm``);
* issuer, audience, Destination, Recipient and the subject confirmation (the library);
* ``InResponseTo`` equal to the request this browser started — the library compares only
  when it is present, so an answer without one to our request is refused here, and one with
  an ``InResponseTo`` but no request of ours (a response meant for another browser) too;
* NotBefore/NotOnOrAfter against the injected clock with a small skew (the library's own
  allowance is a fixed 300 s on wall time; this is the tighter check);
* an assertion without any NotOnOrAfter is refused: replay protection keeps seen IDs until
  the assertion expires, so an assertion that never expires could never be stored safely.

Nothing here touches the database: the caller stores the assertion ID (replay) and consumes
the request. Errors name the check in words, never the message's content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as VE
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from kanvaro.identity.sso import saml
from kanvaro.identity.sso.errors import SsoRefused

security_log = structlog.get_logger("kanvaro.security")
MAX_RESPONSE_BYTES = 512 * 1024  # base64 of a response; real ones are a few KiB

# What an admin reads when a sign-in is refused, by the library's error code.
_REASONS = {
    VE.WRONG_AUDIENCE: "the assertion is for another service provider (audience)",
    VE.WRONG_ISSUER: "the response comes from another identity provider (issuer)",
    VE.ISSUER_MULTIPLE_IN_RESPONSE: "the response names more than one issuer",
    VE.ISSUER_NOT_FOUND_IN_ASSERTION: "the assertion names no issuer",
    VE.WRONG_DESTINATION: "the response was sent to another address (Destination)",
    VE.EMPTY_DESTINATION: "the response has an empty Destination",
    VE.WRONG_SUBJECTCONFIRMATION: (
        "no valid subject confirmation (recipient, request or time window)"
    ),
    VE.ASSERTION_EXPIRED: "the assertion has expired",
    VE.ASSERTION_TOO_EARLY: "the assertion is not valid yet",
    VE.SESSION_EXPIRED: "the IdP session in the assertion has expired",
    VE.WRONG_INRESPONSETO: "the response answers another request (InResponseTo)",
    VE.NO_SIGNED_ASSERTION: "the assertion is not signed",
    VE.NO_SIGNED_MESSAGE: "the response is not signed",
    VE.NO_SIGNATURE_FOUND: "the response carries no signature",
    VE.INVALID_SIGNATURE: "the signature does not verify against the IdP certificate",
    VE.WRONG_NUMBER_OF_SIGNATURES: "unexpected signatures (possible signature wrapping)",
    VE.WRONG_SIGNED_ELEMENT: "the signature covers another element (possible signature wrapping)",
    VE.DUPLICATED_ID_IN_SIGNED_ELEMENTS: "duplicated IDs (possible signature wrapping)",
    VE.DUPLICATED_REFERENCE_IN_SIGNED_ELEMENTS: "duplicated references (signature wrapping)",
    VE.ID_NOT_FOUND_IN_SIGNED_ELEMENT: "a signed element has no ID",
    VE.INVALID_SIGNED_ELEMENT: "the signature references another element (signature wrapping)",
    VE.UNEXPECTED_SIGNED_ELEMENTS: "unexpected signed elements (possible signature wrapping)",
    VE.WRONG_NUMBER_OF_SIGNATURES_IN_RESPONSE: "more than one signature on the response",
    VE.WRONG_NUMBER_OF_SIGNATURES_IN_ASSERTION: "more than one signature on the assertion",
    VE.MISSING_ID: "the response has no ID",
    VE.MISSING_STATUS: "the response has no status",
    VE.MISSING_STATUS_CODE: "the response has no status code",
    VE.WRONG_NUMBER_OF_ASSERTIONS: "the response must carry exactly one assertion",
    VE.DEPRECATED_SIGNATURE_METHOD: "signed with SHA-1, which this provider refuses",
    VE.DEPRECATED_DIGEST_METHOD: "digested with SHA-1, which this provider refuses",
    VE.STATUS_CODE_IS_NOT_SUCCESS: "the identity provider reports a failed sign-in",
    VE.INVALID_XML_FORMAT: "the response is not valid SAML",
    VE.MISSING_CONDITIONS: "the assertion has no Conditions",
    VE.NO_NAMEID: "the assertion names no subject (NameID)",
    VE.EMPTY_NAMEID: "the assertion's NameID is empty",
    VE.UNSUPPORTED_SAML_VERSION: "not SAML 2.0",
    VE.ENCRYPTED_ATTRIBUTES: "encrypted attributes are not supported",
}


class SamlRefused(SsoRefused):
    """An answer of the IdP that fails a check. ``reason`` is safe to show and to audit."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The identity provider's answer was refused: {reason}.", reason=reason)
        self.reason = reason


def peek_in_response_to(saml_response: str | None) -> str | None:
    """The InResponseTo the (not yet verified) response claims, to find the request it
    answers; ``validate`` then requires exactly that request. The parser is python3-saml's
    (no DTDs, no entities)."""
    if not saml_response or len(saml_response) > MAX_RESPONSE_BYTES:
        raise SamlRefused("the response is missing or too large")
    try:
        root = OneLogin_Saml2_XML.to_etree(OneLogin_Saml2_Utils.b64decode(saml_response))
    except Exception:
        raise SamlRefused("the response is not readable SAML") from None
    value = root.get("InResponseTo")
    return value[:255] if value else None


@dataclass(frozen=True)
class SamlAssertion:
    """What a valid assertion says, mapped to our fields."""

    assertion_id: str
    subject: str  # the NameID: the key of the link to our user
    name_id_format: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    groups: tuple[str, ...]
    session_index: str | None  # the IdP's session, for single logout
    authn_contexts: tuple[str, ...]
    mfa_asserted: bool
    expires_at: datetime  # the latest NotOnOrAfter: how long to remember the ID
    session_expires_at: datetime | None  # SessionNotOnOrAfter, when the IdP names one
    in_response_to: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # never the person's attributes in a log line
        return f"SamlAssertion(id={self.assertion_id!r}, mfa={self.mfa_asserted})"


def _ts(seconds: int | float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _reason(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return _REASONS.get(code, "the response failed validation")


def validate(
    provider: saml.SamlProvider,
    saml_response: str,
    *,
    request_id: str | None,
    now: datetime,
    skew: timedelta,
) -> SamlAssertion:
    """Check one POSTed ``SAMLResponse``. ``request_id``: the AuthnRequest ID this browser's
    pending sign-in sent, or None when it has none (an IdP-initiated sign-in)."""
    cfg = provider.config
    if not saml_response or len(saml_response) > MAX_RESPONSE_BYTES:
        raise SamlRefused("the response is missing or too large")
    if request_id is None and not cfg.allow_idp_initiated:
        raise SamlRefused("no sign-in was started here, and IdP-initiated sign-in is off")
    settings = saml.library_settings(provider)
    try:
        response = OneLogin_Saml2_Response(settings, saml_response)
    except Exception:  # not base64, not XML, entities/DTD refused by the parser
        raise SamlRefused("the response is not readable SAML") from None
    in_response_to = response.get_in_response_to()
    if request_id is not None and in_response_to != request_id:
        raise SamlRefused("the response does not answer the request this browser sent")
    if request_id is None and in_response_to is not None:
        raise SamlRefused("the response answers a request this browser did not send")
    data = saml.request_data(provider.endpoints.acs, post={"SAMLResponse": saml_response})
    try:
        response.is_valid(data, request_id, raise_exceptions=True)
    except Exception as exc:
        security_log.info("saml_validation", code=getattr(exc, "code", None),
                          error=type(exc).__name__)  # fmt: skip
        raise SamlRefused(_reason(exc)) from None
    return _read(provider, response, now=now, skew=skew, in_response_to=in_response_to)


def _conditions(response: OneLogin_Saml2_Response) -> tuple[datetime | None, datetime | None]:
    nodes = response._query_assertion("/saml:Conditions")  # the one the signature covers
    if len(nodes) != 1:
        raise SamlRefused("the assertion must have exactly one Conditions element")
    parse = OneLogin_Saml2_Utils.parse_SAML_to_time
    nb, nooa = nodes[0].get("NotBefore"), nodes[0].get("NotOnOrAfter")
    return _ts(parse(nb) if nb else None), _ts(parse(nooa) if nooa else None)


def _read(
    provider: saml.SamlProvider,
    response: OneLogin_Saml2_Response,
    *,
    now: datetime,
    skew: timedelta,
    in_response_to: str | None,
) -> SamlAssertion:
    cfg = provider.config
    not_before, not_on_or_after = _conditions(response)
    confirmation_until = _ts(response.get_assertion_not_on_or_after())
    if not_before is not None and now + skew < not_before:
        raise SamlRefused("the assertion is not valid yet")
    ends = [t for t in (not_on_or_after, confirmation_until) if t is not None]
    if not ends:
        raise SamlRefused("the assertion never expires (no NotOnOrAfter)")
    if any(now - skew >= t for t in ends):
        raise SamlRefused("the assertion has expired")
    assertion_id = response.get_assertion_id()
    if not assertion_id:
        raise SamlRefused("the assertion has no ID")
    attributes = {
        k: [str(v) for v in vs if v is not None] for k, vs in response.get_attributes().items()
    }
    mapping = cfg.attribute_mapping
    name_id = response.get_nameid()

    def first(name: str | None) -> str | None:
        if not name:
            return None
        if name == "NameID":
            return name_id
        values = attributes.get(name) or []
        return values[0].strip() if values and values[0].strip() else None

    contexts = tuple(response.get_authn_contexts())
    return SamlAssertion(
        assertion_id=assertion_id,
        subject=name_id,
        name_id_format=response.get_nameid_format(),
        email=first(mapping.email),
        first_name=first(mapping.first_name),
        last_name=first(mapping.last_name),
        groups=tuple(attributes.get(mapping.groups, [])) if mapping.groups else (),
        session_index=response.get_session_index(),
        authn_contexts=contexts,
        mfa_asserted=any(c in cfg.mfa_authn_contexts for c in contexts),
        expires_at=max(ends) + skew,
        session_expires_at=_ts(response.get_session_not_on_or_after()),
        in_response_to=in_response_to,
        attributes=attributes,
    )
