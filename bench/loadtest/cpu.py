"""Where the CPU went during a run (Linux /proc): the server's own share of its core, and how
busy each core was. A server below ~0.9 of a core while its core was fully busy was sharing
it with something else (another program on a shared machine): that run's figures are low."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the command name may hold spaces


def _tree(root: int) -> list[int]:
    """The process and its descendants (gunicorn's worker is a child of its master)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def process_seconds(root: int) -> float:
    """User + system CPU seconds of a process tree so far."""
    total = 0
    for pid in _tree(root):
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def core_ticks() -> dict[int, tuple[int, int]]:
    """(busy, total) clock ticks per core since boot."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
            out[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return out


@dataclass
class Sample:
    """CPU use between ``start`` and ``stop`` around one load."""

    pid: int
    server_start: float = 0.0
    cores_start: dict[int, tuple[int, int]] | None = None

    def start(self) -> Sample:
        self.server_start = process_seconds(self.pid)
        self.cores_start = core_ticks()
        return self

    def stop(self, wall_seconds: float) -> dict[str, float]:
        used = process_seconds(self.pid) - self.server_start
        out = {"server_cpu_share": round(used / wall_seconds, 3) if wall_seconds else 0.0}
        for core, (busy, total) in core_ticks().items():
            busy0, total0 = (self.cores_start or {}).get(core, (0, 0))
            if total > total0:
                out[f"core{core}_busy_share"] = round((busy - busy0) / (total - total0), 3)
        return out
