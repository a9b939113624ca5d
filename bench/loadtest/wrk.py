"""Running wrk and reading its text output (``--latency``) into numbers."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


class WrkOutputError(ValueError):
    """wrk printed something this parser does not understand (a failed run, a new format)."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    latency_ms: dict[str, float]  # avg, stdev, max, p50, p75, p90, p99
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout
    cpu: dict[str, float] = field(default_factory=dict)  # filled by the runner (cpu.Sample)

    @property
    def p50_ms(self) -> float:
        return self.latency_ms["p50"]

    @property
    def p99_ms(self) -> float:
        return self.latency_ms["p99"]

    @property
    def errors(self) -> int:
        """Answers that were not 2xx/3xx plus socket errors: any makes the run suspect."""
        return self.non_2xx + sum(self.socket_errors.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def duration_ms(value: str) -> float:
    """``"812.00us"``, ``"1.25ms"``, ``"2.01s"``, ``"1.00m"`` in milliseconds."""
    match = re.fullmatch(_DURATION, value.strip())
    if not match:
        raise WrkOutputError(f"not a wrk duration: {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def _search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if not match:
        raise WrkOutputError(f"wrk output lacks {pattern!r}:\n{text[-2000:]}")
    return match


def parse(text: str) -> WrkResult:
    """The numbers of one ``wrk --latency`` run (one thread or several)."""
    latency = _search(rf"^\s+Latency\s+{_DURATION}\s+{_DURATION}\s+{_DURATION}", text)
    values = [latency.group(i) + latency.group(i + 1) for i in (1, 3, 5)]
    latency_ms = dict(zip(("avg", "stdev", "max"), map(duration_ms, values), strict=True))
    section = text[_search(r"^\s+Latency Distribution\s*$", text).end() :]
    for line in section.splitlines()[1:]:  # the lines after the heading, while they are "N%"
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)%\s+(\S+)\s*", line)
        if not match:
            break
        latency_ms[f"p{match.group(1)}"] = duration_ms(match.group(2))
    if "p50" not in latency_ms or "p99" not in latency_ms:
        raise WrkOutputError("wrk output lacks the 50% or 99% latency")
    total = _search(rf"^\s+(\d+) requests in {_DURATION}", text)
    rps = _search(r"^Requests/sec:\s+([\d.]+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=duration_ms(total.group(2) + total.group(3)) / 1e3,
        rps=float(rps.group(1)),
        latency_ms={k: round(v, 3) for k, v in latency_ms.items()},
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


@dataclass(frozen=True)
class WrkOptions:
    threads: int = 1
    connections: int = 32
    duration_s: int = 10
    core: int = 1  # the core wrk is pinned to; the servers get the other one
    # wrk's default (2 s) counts a slower answer as a socket error; a slow answer is a latency
    # to report (the write p99 target), so only a stuck one should count as an error.
    timeout_s: int = 10

    def argv(self, script: Path, url: str) -> list[str]:
        return [
            "taskset",
            "-c",
            str(self.core),
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{self.duration_s}s",
            "--latency",
            f"--timeout={self.timeout_s}s",
            "-s",
            str(script),
            url,
        ]


def run(options: WrkOptions, script: Path, url: str, env: dict[str, str]) -> WrkResult:
    """One wrk run; ``env`` carries the script's ``BENCH_*`` settings (tokens stay off argv)."""
    done = subprocess.run(
        options.argv(script, url),
        env={**os.environ, "BENCH_LUA_DIR": str(script.parent), **env},
        capture_output=True,
        text=True,
        timeout=options.duration_s + 60,
        check=False,
    )
    if done.returncode != 0:
        raise WrkOutputError(f"wrk exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return parse(done.stdout)
