"""The other benchmarks of bench/ (audit, crypto), run as they are; their JSON joins the
result document."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.loadtest.stack import REPO, SERVER_CORE

SCRIPTS = {
    "audit": "bench/bench_audit.py",
    "crypto": "bench/bench_crypto.py",
    "ratelimit": "bench/bench_ratelimit.py",
}


def last_json_object(text: str) -> dict[str, Any]:
    """The last top-level JSON object a script printed (each ends with ``print(json.dumps(...))``)."""
    decoder = json.JSONDecoder()
    starts = [i for i, line in _line_starts(text) if line.startswith("{")]
    for start in reversed(starts):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object in the output")


def _line_starts(text: str) -> list[tuple[int, str]]:
    out, offset = [], 0
    for line in text.splitlines(keepends=True):
        out.append((offset, line))
        offset += len(line)
    return out


def run(name: str, quick: bool) -> dict[str, Any]:
    argv = ["taskset", "-c", str(SERVER_CORE), sys.executable, SCRIPTS[name]]
    if quick and name in ("crypto", "ratelimit"):
        argv += ["--n", "5000" if name == "ratelimit" else "20000"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}", "stderr": done.stderr.strip()[-2000:]}
    try:
        return last_json_object(done.stdout)
    except ValueError as exc:
        return {"error": str(exc), "stdout": done.stdout.strip()[-2000:]}
