"""Every response names its request; a harmless client id is kept, anything else replaced."""

from __future__ import annotations


async def test_a_request_id_is_generated(faulty):
    a = (await faulty.get("/healthz")).headers["x-request-id"]
    b = (await faulty.get("/healthz")).headers["x-request-id"]
    assert a and b and a != b


async def test_a_safe_client_request_id_is_echoed(faulty):
    r = await faulty.get("/healthz", headers={"X-Request-ID": "trace-abc.123_XYZ"})
    assert r.headers["x-request-id"] == "trace-abc.123_XYZ"


async def test_an_unsafe_client_request_id_is_replaced(faulty):
    for bad in ("short", "a" * 65, "bad id with spaces", "line\\nbreak-0000"):
        r = await faulty.get("/healthz", headers={"X-Request-ID": bad})
        assert r.headers["x-request-id"] != bad
        assert len(r.headers["x-request-id"]) == 32


async def test_the_500_body_carries_the_request_id(faulty):
    r = await faulty.get("/_test/boom", headers={"X-Request-ID": "req-0123456789"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "req-0123456789"
    assert r.json()["requestId"] == "req-0123456789"
