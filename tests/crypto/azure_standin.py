"""A small local HTTPS stand-in for the Azure Key Vault keys REST API (tests only).

No Key Vault emulator exists here, so the ``azure-keyvault`` provider is tested against this:
the documented calls the provider makes, answered the way Key Vault answers them
(https://learn.microsoft.com/rest/api/keyvault/keys/): the bearer challenge (401 with
``WWW-Authenticate``), create key (a new version each time), get key (latest or a version),
key versions, wrapKey/unwrapKey with RSA-OAEP-256, delete (soft-delete), get deleted key and
purge. It serves TLS with a throwaway CA (trustme). What it cannot show: Azure AD tokens,
RBAC/access policies, HSM-backed keys, throttling and purge protection's real behaviour.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

OAEP256 = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


class Vault:
    """The stand-in's state: keys by name, each a list of versions; soft-deleted keys."""

    def __init__(self, token: str, *, purge_protection: bool = False) -> None:
        self.token = token
        self.purge_protection = purge_protection
        self.keys: dict[str, list[tuple[str, rsa.RSAPrivateKey, dict[str, Any]]]] = {}
        self.deleted: dict[str, list[tuple[str, rsa.RSAPrivateKey, dict[str, Any]]]] = {}
        self.calls: list[str] = []
        self.base = ""
        self.lock = threading.Lock()

    def bundle(self, name: str, version: str, key: rsa.RSAPrivateKey, meta: dict) -> dict:
        numbers = key.public_key().public_numbers()
        return {
            "key": {
                "kid": f"{self.base}/keys/{name}/{version}",
                "kty": "RSA",
                "key_ops": meta["key_ops"],
                "n": _b64u(_int_bytes(numbers.n)),
                "e": _b64u(_int_bytes(numbers.e)),
            },
            "attributes": {
                "enabled": True,
                "created": meta["created"],
                "updated": meta["created"],
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": meta.get("tags", {}),
        }


class _Handler(BaseHTTPRequestHandler):
    vault: Vault

    def log_message(self, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"error": {"code": code, "message": message}})

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.vault.token}":
            return True
        self._body()  # drain
        self._send(
            401,
            {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer"}},
            {
                "WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/'
                f'{uuid.UUID(int=1)}", resource="https://vault.azure.net"'
            },
        )
        return False

    def _route(self, method: str) -> None:
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        v = self.vault
        with v.lock:
            v.calls.append(f"{method} {path}")
            m = re.fullmatch(r"/keys/([\w-]+)/create", path)
            if method == "POST" and m:
                return self._create(m[1], self._body())
            m = re.fullmatch(r"/keys/([\w-]+)/versions", path)
            if method == "GET" and m:
                versions = v.keys.get(m[1])
                if not versions:
                    return self._error(404, "KeyNotFound", "A key with (name/id) was not found")
                items = [
                    {"kid": f"{v.base}/keys/{m[1]}/{ver}", "attributes": {"enabled": True}}
                    for ver, _, _ in versions
                ]
                return self._send(200, {"value": items, "nextLink": None})
            m = re.fullmatch(r"/keys/([\w-]+)/([0-9a-f]{32})/(wrapkey|unwrapkey)", path)
            if method == "POST" and m:
                return self._wrap(m[1], m[2], m[3], self._body())
            m = re.fullmatch(r"/keys/([\w-]+)(?:/([0-9a-f]{32}))?", path)
            if method == "GET" and m:
                found = self._version(m[1], m[2])
                if found is None:
                    return self._error(404, "KeyNotFound", "A key with (name/id) was not found")
                return self._send(200, v.bundle(m[1], *found))
            if method == "DELETE" and m and m[2] is None:
                versions = v.keys.pop(m[1], None)
                if not versions:
                    return self._error(404, "KeyNotFound", "A key with (name/id) was not found")
                v.deleted[m[1]] = versions
                return self._send(200, self._deleted_bundle(m[1]))
            m = re.fullmatch(r"/deletedkeys/([\w-]+)", path)
            if m and m[1] in v.deleted:
                if method == "GET":
                    return self._send(200, self._deleted_bundle(m[1]))
                if method == "DELETE":
                    if v.purge_protection:
                        return self._error(403, "Forbidden", "Operation purge is not allowed")
                    del v.deleted[m[1]]
                    return self._send(204)
            if m:
                return self._error(404, "KeyNotFound", "Deleted Key not found")
            return self._error(400, "BadParameter", f"unsupported: {method} {path}")

    def _version(self, name: str, version: str | None):  # type: ignore[no-untyped-def]
        versions = self.vault.keys.get(name)
        if not versions:
            return None
        if version is None:
            return versions[-1]
        return next((entry for entry in versions if entry[0] == version), None)

    def _deleted_bundle(self, name: str) -> dict:
        v = self.vault
        bundle = v.bundle(name, *v.deleted[name][-1])
        now = int(time.time())
        return {
            **bundle,
            "recoveryId": f"{v.base}/deletedkeys/{name}",
            "deletedDate": now,
            "scheduledPurgeDate": now + 90 * 86400,
        }

    def _create(self, name: str, body: dict) -> None:
        v = self.vault
        if name in v.deleted:
            return self._error(
                409, "Conflict", "Key is currently in a deleted but recoverable state"
            )
        if body.get("kty") not in ("RSA", "RSA-HSM"):
            return self._error(400, "BadParameter", "only RSA keys in this stand-in")
        size = int(body.get("key_size") or 2048)
        key = rsa.generate_private_key(public_exponent=65537, key_size=size)
        version = uuid.uuid4().hex
        meta = {
            "key_ops": body.get("key_ops") or ["wrapKey", "unwrapKey"],
            "created": int(time.time()),
            "tags": body.get("tags") or {},
        }
        v.keys.setdefault(name, []).append((version, key, meta))
        self._send(200, v.bundle(name, version, key, meta))

    def _wrap(self, name: str, version: str, op: str, body: dict) -> None:
        found = self._version(name, version)
        if found is None:
            return self._error(404, "KeyNotFound", "A key with (name/id) was not found")
        _, key, meta = found
        wanted = "wrapKey" if op == "wrapkey" else "unwrapKey"
        if wanted not in meta["key_ops"]:
            return self._error(403, "Forbidden", f"Operation {wanted} is not permitted on this key")
        if body.get("alg") != "RSA-OAEP-256":
            return self._error(400, "BadParameter", "Unsupported algorithm")
        value = _unb64u(body.get("value", ""))
        try:
            out = (
                key.public_key().encrypt(value, OAEP256)
                if op == "wrapkey"
                else key.decrypt(value, OAEP256)
            )
        except ValueError:
            return self._error(400, "BadParameter", "Error decrypting")
        self._send(200, {"kid": f"{self.vault.base}/keys/{name}/{version}", "value": _b64u(out)})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")


class StandIn:
    """``with StandIn(token, cert) as s: s.url`` — an HTTPS Key Vault stand-in on 127.0.0.1."""

    def __init__(self, token: str, server_cert: Any, *, purge_protection: bool = False) -> None:
        self.vault = Vault(token, purge_protection=purge_protection)
        handler = type("Handler", (_Handler,), {"vault": self.vault})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://localhost:{self._server.server_address[1]}"
        self.vault.base = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
