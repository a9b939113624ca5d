"""An unexpected exception becomes a 500 problem+json that reveals nothing internal."""

from __future__ import annotations

import json

from tests.middleware.faults import LEAKY_MESSAGE


async def test_an_unexpected_error_is_a_bare_500_problem(faulty):
    r = await faulty.get("/_test/boom")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 500 and body["title"] == "Internal Server Error"
    assert set(body) <= {"type", "title", "status", "detail", "instance", "requestId"}
    text = r.text
    for leak in (
        LEAKY_MESSAGE,
        "SELECT",
        "hunter2",
        "RuntimeError",
        "Traceback",
        ".py",
        "/srv/",
        "faults",
        "password_hash",
    ):
        assert leak not in text, leak
    assert r.headers["x-request-id"] == body["requestId"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in r.headers


async def test_the_log_names_the_error_type_but_not_its_message(faulty, capsys):
    await faulty.get("/_test/boom")
    err = capsys.readouterr()
    logged = err.err + err.out
    assert "hunter2" not in logged and "password_hash" not in logged
    lines = [line for line in logged.splitlines() if "unhandled_error" in line]
    if lines and lines[-1].startswith("{"):
        assert json.loads(lines[-1])["error_type"] == "RuntimeError"
