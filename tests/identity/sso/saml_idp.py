"""A real SAML 2.0 IdP for the tests: pysaml2's IdP side (``saml2.server.Server``) behind a
small HTTP server on loopback, signing with RSA-SHA256 through the ``xmlsec1`` command.

It serves the HTTP-Redirect SSO endpoint (verifies our signed AuthnRequest against the SP
metadata it was given, answers with an auto-posting HTML form, as a browser sees it), the
IdP metadata, and a single logout endpoint. Knobs on the instance let a test ask for what a
misbehaving or hostile IdP would send: SHA-1, another audience, an expired assertion, no
signature, an AuthnContext.
"""

from __future__ import annotations

import html
import re
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server

from kanvaro.identity.sso import saml_keys

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
MFA = "https://refeds.org/profile/mfa"


# The attributeMapping a provider for this IdP uses.
MAPPING = {
    "email": "user.email",
    "firstName": "user.firstName",
    "lastName": "user.lastName",
    "groups": "user.groups",
}


@dataclass
class User:
    email: str
    first_name: str = "Ada"
    last_name: str = "Lovelace"
    groups: tuple[str, ...] = ()


@dataclass
class Knobs:
    """What the next answers look like; reset per test with ``idp.reset()``."""

    sign_alg: str = RSA_SHA256
    digest_alg: str = SHA256
    sign_assertion: bool = True
    sign_response: bool = False
    audience: str | None = None  # None: the SP that asked
    lifetime_minutes: int = 5
    authn_class: str = PASSWORD
    user: User | None = None


@dataclass
class IdP:
    base: str
    server: Server
    knobs: Knobs = field(default_factory=Knobs)
    issued: list[str] = field(default_factory=list)  # the base64 SAMLResponses handed out
    logout_requests: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def entity_id(self) -> str:
        return f"{self.base}/metadata"

    @property
    def sso_url(self) -> str:
        return f"{self.base}/sso"

    @property
    def slo_url(self) -> str:
        return f"{self.base}/slo"

    def reset(self) -> None:
        self.knobs = Knobs()

    def metadata_xml(self) -> str:
        xml = create_metadata_string(None, self.server.config, 4, None, None, None, None, None)
        return xml.decode() if isinstance(xml, bytes) else xml

    def cert_pem(self) -> str:
        return Path(self.server.config.cert_file).read_text()

    def register_sp(self, sp_metadata: str) -> None:
        """Load (or refresh, as an IdP's metadata refresh does) an SP's metadata."""
        from lxml import etree

        entity_id = etree.fromstring(sp_metadata.encode()).get("entityID")
        with self._lock:
            store = self.server.metadata.metadata
            for key in [k for k, md in store.items() if entity_id in getattr(md, "entity", {})]:
                del store[key]
            self.server.metadata.load("inline", sp_metadata)

    # -- the SSO endpoint ---------------------------------------------------------------
    def answer_authn_request(self, query: dict[str, str]) -> str:
        """Verify the signed AuthnRequest and return the auto-posting form of the answer."""
        with self._lock:
            req = self.server.parse_authn_request(
                query["SAMLRequest"],
                BINDING_HTTP_REDIRECT,
                relay_state=query.get("RelayState"),
                sigalg=query.get("SigAlg"),
                signature=query.get("Signature"),
            )
            message = req.message
            acs = message.assertion_consumer_service_url
            sp = message.issuer.text
            b64 = self.make_response(sp, acs, in_response_to=message.id)
            return form_html(acs, b64, query.get("RelayState", ""))

    def make_response(self, sp_entity_id: str, acs: str, *, in_response_to: str | None) -> str:
        """A base64 SAMLResponse as the knobs say (``in_response_to`` None: IdP-initiated)."""
        import base64

        k = self.knobs
        user = k.user or User(f"saml-{uuid.uuid4().hex[:8]}@kanvaro.example")
        # Names pysaml2 has no converter for travel as they are (MAPPING below).
        identity = {
            "user.email": [user.email],
            "user.firstName": [user.first_name],
            "user.lastName": [user.last_name],
        }
        if user.groups:
            identity["user.groups"] = list(user.groups)
        audience = k.audience or sp_entity_id
        policy = self.server.config.getattr("policy", "idp")
        policy._restrictions["default"]["lifetime"] = {"minutes": k.lifetime_minutes}
        resp = self.server.create_authn_response(
            identity,
            in_response_to,
            acs,
            audience,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=user.email),
            authn={
                "class_ref": k.authn_class,
                "authn_auth": self.entity_id,
            },
            sign_assertion=k.sign_assertion,
            sign_response=k.sign_response,
            sign_alg=k.sign_alg,
            digest_alg=k.digest_alg,
        )
        b64 = base64.b64encode(str(resp).encode()).decode()
        self.issued.append(b64)
        return b64

    def last_session_index(self) -> str:
        """The SessionIndex of the last answer (pysaml2 draws a fresh one per assertion)."""
        import base64

        from lxml import etree

        doc = etree.fromstring(base64.b64decode(self.issued[-1]))
        ns = "{urn:oasis:names:tc:SAML:2.0:assertion}"
        return doc.find(f".//{ns}AuthnStatement").get("SessionIndex")

    # -- single logout ------------------------------------------------------------------
    def read_logout_request(self, query: dict[str, str]) -> dict[str, Any]:
        """Our SP's LogoutRequest, its redirect signature verified against our metadata."""
        with self._lock:
            req = self.server.parse_logout_request(
                query["SAMLRequest"],
                BINDING_HTTP_REDIRECT,
                relay_state=query.get("RelayState"),
                sigalg=query.get("SigAlg"),
                signature=query.get("Signature"),
            )
        message = req.message
        return {
            "name_id": message.name_id.text if message.name_id is not None else None,
            "session_indexes": [i.text for i in message.session_index or []],
            "issuer": message.issuer.text,
            "relay_state": query.get("RelayState"),
        }

    def logout_request_query(
        self,
        sp_entity_id: str,
        provider_id: str,
        email: str,
        session_index: str | None,
        *,
        sign: bool,
        destination: str | None = None,
    ) -> dict[str, str]:
        """The query of an IdP-initiated LogoutRequest (HTTP-Redirect), signed or not."""
        slo = destination or f"http://localhost:8000/api/v1/sso/{provider_id}/saml/slo"
        with self._lock:
            _id, req = self.server.create_logout_request(
                slo,
                sp_entity_id,
                name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
                session_indexes=[session_index] if session_index else None,
                expire=None,
                sign=False,
            )
            info = self.server.apply_binding(
                BINDING_HTTP_REDIRECT, str(req), slo, relay_state="", sign=sign,
                sigalg=RSA_SHA256 if sign else None,
            )  # fmt: skip
        location = dict(info["headers"])["Location"]
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def form_html(action: str, b64: str, relay_state: str) -> str:
    """The HTTP-POST binding as an IdP page: a form the page's script submits at once."""
    return (
        "<!doctype html><html><body onload='document.forms[0].submit()'>"
        f'<form method="post" action="{html.escape(action)}">'
        f'<input type="hidden" name="SAMLResponse" value="{html.escape(b64)}">'
        f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}">'
        '<noscript><button type="submit">Continue</button></noscript></form></body></html>'
    )


def read_form(page: str) -> dict[str, str]:
    """The hidden fields of an auto-posting form (what the browser would send)."""
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page))
    return {k: html.unescape(v) for k, v in fields.items()}


def _config(base: str, key_file: str, cert_file: str) -> IdPConfig:
    conf = IdPConfig()
    conf.load(
        {
            "entityid": f"{base}/metadata",
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "metadata": {},
            "signing_algorithm": RSA_SHA256,
            "digest_algorithm": SHA256,
            "service": {
                "idp": {
                    "name": "Kanvaro test IdP",
                    "endpoints": {
                        "single_sign_on_service": [(f"{base}/sso", BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [(f"{base}/slo", BINDING_HTTP_REDIRECT)],
                    },
                    "want_authn_requests_signed": True,
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_URI,
                        }
                    },
                }
            },
        }
    )
    return conf


class _Handler(BaseHTTPRequestHandler):
    idp: IdP

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, body: str, ctype: str = "text/html; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            if parts.path == "/metadata":
                self._send(200, self.idp.metadata_xml(), "application/samlmetadata+xml")
            elif parts.path == "/sso":
                self._send(200, self.idp.answer_authn_request(query))
            elif parts.path == "/slo":
                self.idp.logout_requests.append(self.idp.read_logout_request(query))
                self._send(200, "<!doctype html><p>signed out</p>")
            else:
                self._send(404, "not found", "text/plain")
        except Exception as exc:  # a refused request: the test sees the reason
            self._send(400, f"refused: {type(exc).__name__}: {exc}", "text/plain")


def start(port: int) -> tuple[IdP, ThreadingHTTPServer, tempfile.TemporaryDirectory[str]]:
    folder = tempfile.TemporaryDirectory(prefix="kanvaro-idp-")
    pair = saml_keys.generate_pair("kanvaro-test-idp", datetime.now(UTC))
    key_file, cert_file = Path(folder.name) / "idp.key", Path(folder.name) / "idp.crt"
    key_file.write_text(pair["privateKey"])
    cert_file.write_text(pair["cert"])
    base = f"http://127.0.0.1:{port}"
    idp = IdP(base, Server(config=_config(base, str(key_file), str(cert_file))))
    handler = type("Handler", (_Handler,), {"idp": idp})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return idp, httpd, folder
