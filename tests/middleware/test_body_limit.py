"""Bodies over the limit are refused with 413 problem+json, declared or streamed."""

from __future__ import annotations

PROBLEM = "application/problem+json"


def _limit(faulty) -> int:
    return faulty._transport.app.state.services.settings.max_body_bytes


async def test_a_declared_content_length_over_the_limit_is_refused(faulty):
    r = await faulty.post("/_test/echo", content=b"x" * (_limit(faulty) + 1))
    assert r.status_code == 413
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["status"] == 413


async def test_a_chunked_body_without_length_is_counted_and_refused(faulty):
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(40):
            sent += 64 * 1024
            yield b"y" * (64 * 1024)

    r = await faulty.post("/_test/echo", content=chunks())
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert "content-length" not in {k.lower() for k in r.request.headers}


async def test_a_chunked_body_on_an_api_route_is_refused_before_auth(faulty):
    async def chunks():
        for _ in range(40):
            yield b'{"name": "' + b"z" * (64 * 1024)

    r = await faulty.post("/api/v1/projects", content=chunks())
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith(PROBLEM)


async def test_a_body_at_the_limit_passes(faulty):
    r = await faulty.post("/_test/echo", content=b"x" * _limit(faulty))
    assert r.status_code == 200
    assert r.json() == {"received": _limit(faulty)}

    async def chunks():
        yield b"a" * 1000
        yield b"b" * 1000

    r = await faulty.post("/_test/echo", content=chunks())
    assert r.status_code == 200 and r.json() == {"received": 2000}


async def test_an_invalid_content_length_is_a_bad_request(faulty):
    r = await faulty.post("/_test/echo", content=b"abc", headers={"Content-Length": "lots"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith(PROBLEM)
