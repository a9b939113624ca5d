"""Medians, ratios and targets of a run; the printed table and the result document.

A load runs once per round; its req/s, p50 and p99 are each the median over the rounds. A
ratio is the median over the rounds of (subject req/s / baseline req/s) within one round, so
both sides of every ratio saw the same machine at nearly the same time.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench.loadtest.wrk import WrkResult


@dataclass(frozen=True)
class Target:
    kind: str  # ratio | rps | p99_ms | overhead_ms
    value: float

    @classmethod
    def ratio(cls, at_least: float) -> Target:
        return cls("ratio", at_least)

    @classmethod
    def rps(cls, at_least: float) -> Target:
        return cls("rps", at_least)

    @classmethod
    def p99(cls, below_ms: float) -> Target:
        return cls("p99_ms", below_ms)

    @classmethod
    def overhead(cls, at_most_ms: float) -> Target:
        return cls("overhead_ms", at_most_ms)

    def describe(self) -> str:
        return {
            "ratio": f">= {self.value:g}x",
            "rps": f">= {self.value:g} req/s",
            "p99_ms": f"p99 < {self.value:g} ms",
            "overhead_ms": f"<= hash + {self.value:g} ms",
        }[self.kind]

    def met(self, row: dict[str, Any]) -> bool | None:
        measured = {
            "ratio": row.get("ratio"),
            "rps": row.get("rps"),
            "p99_ms": row.get("p99_ms"),
            "overhead_ms": row.get("overhead_ms"),
        }[self.kind]
        if measured is None:
            return None
        if self.kind in ("ratio", "rps"):
            return measured >= self.value
        if self.kind == "p99_ms":
            return measured < self.value
        return measured <= self.value


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summarize_load(runs: Sequence[WrkResult]) -> dict[str, Any]:
    return {
        "rps": round(median([r.rps for r in runs]), 1),
        "p50_ms": round(median([r.p50_ms for r in runs]), 2),
        "p99_ms": round(median([r.p99_ms for r in runs]), 2),
        "errors": sum(r.errors for r in runs),
        **_cpu_medians(runs),
        "rounds": [r.to_json() for r in runs],
    }


def _cpu_medians(runs: Sequence[WrkResult]) -> dict[str, float]:
    keys = sorted({k for r in runs for k in r.cpu})
    return {k: round(median([r.cpu[k] for r in runs if k in r.cpu]), 3) for k in keys}


def compare(
    label: str,
    subject: Sequence[WrkResult],
    baseline: Sequence[WrkResult] | None,
    target: Target | None,
) -> dict[str, Any]:
    """One row: the subject's medians, its ratio to the baseline, the target and its verdict.

    A run with errors (non-2xx answers, socket errors) fails its row whatever the speed: an
    error page served fast is not throughput.
    """
    row: dict[str, Any] = {"scenario": label, **summarize_load(subject)}
    del row["rounds"]
    errors = row["errors"]
    if baseline is not None:
        if len(baseline) != len(subject):
            raise ValueError("subject and baseline need the same number of rounds")
        per_round = [
            s.rps / b.rps if b.rps else 0.0 for s, b in zip(subject, baseline, strict=True)
        ]
        row["ratio_per_round"] = [round(r, 3) for r in per_round]
        row["ratio"] = round(median(per_round), 3)
        errors += sum(b.errors for b in baseline)
    return _verdict(row, target, errors)


def signin_row(
    label: str, signin_ms: Sequence[float], hash_ms: Sequence[float], target: Target
) -> dict[str, Any]:
    """Sign-in latency against the argon2id hash it must include: ``hash_ms[i]`` was timed
    right after ``signin_ms[i]``, and the overhead is the median of those differences."""
    if len(signin_ms) != len(hash_ms):
        raise ValueError("each sign-in needs the hash timed after it")
    row = {
        "scenario": label,
        "p50_ms": round(median(signin_ms), 2),
        "hash_ms": round(median(hash_ms), 2),
        "overhead_ms": round(median([s - h for s, h in zip(signin_ms, hash_ms, strict=True)]), 2),
        "samples": len(signin_ms),
    }
    return _verdict(row, target, 0)


def _verdict(row: dict[str, Any], target: Target | None, errors: int) -> dict[str, Any]:
    row["errors"] = errors
    row["target"] = target.describe() if target else None
    passed = target.met(row) if target else None
    row["passed"] = False if errors and target else passed
    return row


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    # "server cpu": the share of its core the server used (about 1.0 when it was the only
    # thing running there; lower on a busy machine, see cpu.py).
    header = ("scenario", "req/s", "p50 ms", "p99 ms", "ratio", "target", "result", "server cpu")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row["scenario"],
                _num(row.get("rps"), 0),
                _num(row.get("p50_ms"), 1),
                _num(row.get("p99_ms"), 1),
                _ratio(row),
                row.get("target") or "",
                _result(row),
                _num(row.get("server_cpu_share"), 2),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.ljust(widths[i]) if i in (0, 5, 6) else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _ratio(row: dict[str, Any]) -> str:
    if row.get("ratio") is not None:
        # Rounded down: a ratio shown as 1.20x has reached 1.2 (1.196 shows as 1.19x).
        return f"{math.floor(row['ratio'] * 100) / 100:.2f}x"
    if row.get("overhead_ms") is not None:
        return f"hash {row['hash_ms']:.1f} + {row['overhead_ms']:.1f} ms"
    return ""


def _result(row: dict[str, Any]) -> str:
    passed = row.get("passed")
    label = "" if passed is None else "pass" if passed else "FAIL"
    if row.get("errors"):
        label = (label + f" ({row['errors']} errors)").strip()
    return label


def result_path(results_dir: Path, day: date, suffix: str = "") -> Path:
    """``<YYYY-MM-DD>.json`` for a full run; a smoke or partial run gets a suffix, so it never
    replaces the day's full result."""
    return results_dir / f"{day.isoformat()}{'-' + suffix if suffix else ''}.json"


def write_document(path: Path, document: dict[str, Any]) -> Path:
    """Write atomically (``*.tmp`` then rename): a crashed run leaves no half-written result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
