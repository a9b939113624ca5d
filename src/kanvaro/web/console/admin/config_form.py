"""A form of plain fields for a pydantic model (an identity provider's configuration), read
off the model itself: a text box for a string or URL, a checkbox for a flag, a list for a
choice, a number box, one line per item for a list, ``key = value`` lines for a mapping, and
the fields of a nested model under ``outer.inner``. The same description turns the stored
values into the form's text and the submitted text back into the API's JSON object, which the
model then validates as for the API (so each refusal names ``config.<field>``).

Nothing here knows which fields a type has: a field added to a schema appears on the page.
Secret fields are left out (the page has a write-only field of its own for them).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from kanvaro.errors import Unprocessable

PREFIX = "config"
LONG_TEXT = frozenset({"cert", "idpMetadataXml"})  # pasted documents: a text area
# Words people know these by; anything else is read off its camelCase name.
LABELS = {
    "clientId": "Client ID",
    "issuer": "Issuer",
    "idpEntityId": "IdP entity ID",
    "entryPoint": "IdP sign-in URL (SSO service, HTTP-Redirect)",
    "cert": "IdP signing certificate (PEM)",
    "idpMetadataXml": "IdP metadata XML (optional: fills in what is left empty)",
    "roleMapping": "Role mapping (one 'IdP group = Kanvaro role' per line)",
    "defaultRole": "Role when no group maps",
    "domains": "Email domains it serves (one per line)",
    "jitProvisioning": "Create an account on first sign-in",
    "mfaMode": "Second step",
    "requireIdpMfa": "Refuse a sign-in the IdP did not do MFA for",
    "tokenEndpointAuthMethod": "Token endpoint authentication",
    "idTokenSigningAlgs": "ID token signing algorithms",
    "assumeEmailVerified": "Treat every address from this IdP as verified",
    "assertsVerifiedEmail": "The IdP's addresses are verified",
    "allowSha1": "Accept SHA-1 signatures (legacy IdPs only)",
    "allowIdpInitiated": "Accept IdP-initiated sign-in",
    "wantAssertionsSigned": "Require signed assertions",
    "wantResponseSigned": "Require a signed response",
    "mfaAmrValues": "amr values that mean the IdP did MFA (one per line)",
    "mfaAcrValues": "acr values that mean the IdP did MFA (one per line)",
    "requestAcrValues": "acr values to ask the IdP for (one per line)",
    "mfaAuthnContexts": "AuthnContextClassRef values that mean the IdP did MFA (one per line)",
    "scopes": "Scopes (one per line)",
    "additionalCerts": "Further IdP signing certificates (one base64 certificate per line)",
}

Kind = Literal["text", "long", "flag", "choice", "number", "lines", "pairs"]


@dataclass(frozen=True)
class FormField:
    key: str  # the path in the JSON object, dotted for a nested model: "attributeMapping.email"
    label: str
    kind: Kind
    required: bool
    choices: tuple[str, ...] = ()
    hint: str = ""
    optional: bool = False  # may be null: an empty field means none; else it means ""

    @property
    def name(self) -> str:
        """The input's name, which is also how a refusal names the field."""
        return f"{PREFIX}.{self.key}"

    @property
    def id(self) -> str:
        return "cf-" + re.sub(r"[^A-Za-z0-9]+", "-", self.key)


_ACRONYMS = {"url": "URL", "id": "ID", "idp": "IdP", "mfa": "MFA", "amr": "amr", "acr": "acr"}


def _words(key: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key.split(".")[-1]).lower()
    words = [_ACRONYMS.get(w, w) for w in spaced.split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Optional[X]`` as ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _base(annotation: Any) -> Any:
    """``Annotated[X, ...]`` as ``X``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def form_fields(
    model: type[BaseModel],
    *,
    skip: tuple[str, ...] = (),
    shared: type[BaseModel] | None = None,
) -> list[FormField]:
    """The model's fields as form fields: required ones first, then the model's own, then
    those of ``shared`` (settings every type has, such as provisioning and MFA)."""
    common = set(shared.model_fields) if shared else set()
    own = [n for n in model.model_fields if n not in common]
    order = own + [n for n in model.model_fields if n in common]
    found = [f for name in order for f in _field(model, name, "", skip)]
    return [f for f in found if f.required] + [f for f in found if not f.required]


def _field(
    model: type[BaseModel], name: str, prefix: str, skip: tuple[str, ...]
) -> list[FormField]:
    info = model.model_fields[name]
    key = prefix + (info.alias or name)
    if key in skip:
        return []
    nullable = _unwrap(info.annotation) is not info.annotation
    annotation = _base(_unwrap(info.annotation))
    origin = typing.get_origin(annotation)
    required = info.is_required()
    label = LABELS.get(key, _words(key))
    hint = info.description or ""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [
            f
            for inner in annotation.model_fields
            for f in _field(annotation, inner, key + ".", skip)
        ]
    if annotation is bool:
        return [FormField(key, label, "flag", False, hint=hint)]
    if annotation is int:
        return [FormField(key, label, "number", required, hint=hint, optional=nullable)]
    if origin is Literal:
        return [FormField(key, label, "choice", required, tuple(typing.get_args(annotation)), hint)]
    if origin is list:
        (item,) = typing.get_args(annotation) or (str,)
        item = _base(item)
        choices = tuple(typing.get_args(item)) if typing.get_origin(item) is Literal else ()
        if choices:
            hint = hint or "Allowed: " + ", ".join(choices) + "."
        return [FormField(key, label, "lines", required, choices, hint)]
    if origin is dict:
        return [FormField(key, label, "pairs", required, hint=hint)]
    kind: Kind = "long" if key in LONG_TEXT else "text"
    return [FormField(key, label, kind, required, hint=hint, optional=nullable)]


def _get(data: Mapping[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def form_values(fields: list[FormField], data: Mapping[str, Any]) -> dict[str, str]:
    """The stored object as the form's text, by input name."""
    out: dict[str, str] = {}
    for f in fields:
        value = _get(data, f.key)
        if f.kind == "flag":
            out[f.name] = "on" if value else ""
        elif f.kind == "lines":
            out[f.name] = "\n".join(str(v) for v in value or [])
        elif f.kind == "pairs":
            out[f.name] = "\n".join(f"{k} = {v}" for k, v in (value or {}).items())
        else:
            out[f.name] = "" if value is None else str(value)
    return out


def submitted(fields: list[FormField], form: Mapping[str, Any]) -> dict[str, str]:
    """The form's text by input name, as typed (to show the form again after a refusal)."""
    return {f.name: str(form.get(f.name) or "") for f in fields}


def _refuse(f: FormField, message: str) -> Unprocessable:
    return Unprocessable(
        f"The provider's config is not valid: {f.label}: {message}.",
        errors=[{"field": f.name, "in": "body", "message": message}],
    )


def object_from(fields: list[FormField], text: Mapping[str, str]) -> dict[str, Any]:
    """The submitted text as the JSON object the model validates: an empty field that may be
    null, that is required, or a choice or number, is left out (none; missing; its default),
    an empty text field with a default is the empty string (the schema says whether that is allowed), an empty list field an empty
    list, an unticked box false."""
    out: dict[str, Any] = {}
    for f in fields:
        raw = str(text.get(f.name) or "")
        value: Any
        if f.kind == "flag":
            value = raw != ""
        elif f.kind == "lines":
            value = [line.strip() for line in raw.splitlines() if line.strip()]
        elif f.kind == "pairs":
            value = {}
            for line in raw.splitlines():
                if not line.strip():
                    continue
                # The last '=': a directory group's name has its own (CN=Admins,OU=...).
                left, sep, right = line.rpartition("=")
                if not sep or not left.strip() or not right.strip():
                    raise _refuse(
                        f, f"write each line as 'group = role', not {line.strip()[:40]!r}"
                    )
                value[left.strip()] = right.strip()
        elif not raw.strip() and (f.optional or f.required or f.kind in ("choice", "number")):
            # None; or missing, which another field may fill (SAML metadata) or the schema
            # names.
            continue
        elif f.kind == "number":
            try:
                value = int(raw.strip())
            except ValueError:
                raise _refuse(f, "a whole number") from None
        else:
            value = raw.strip()
        _put(out, f.key, value)
    return out


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    *outer, last = key.split(".")
    for part in outer:
        data = data.setdefault(part, {})
    data[last] = value


def messages(fields: list[FormField], refused: Mapping[str, str]) -> dict[str, str]:
    """A refusal's messages by input name: ``config.domains.0`` belongs to ``config.domains``."""
    out: dict[str, str] = {}
    for f in fields:
        for name, message in refused.items():
            if (name == f.name or name.startswith(f.name + ".")) and f.name not in out:
                out[f.name] = message
    return out
