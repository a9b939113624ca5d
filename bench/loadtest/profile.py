"""``bench/run --profile``: py-spy samples Kanvaro while wrk loads it, and the harness sums the
stacks per function, so a result file says where a scenario's server time went.

py-spy's ``raw`` format is one line per distinct stack, ``frame;frame;... count``, outermost
first. A function's *inclusive* share counts every sample with that function anywhere on the
stack (once per sample, however deep it recurses); *own* counts samples where it is the
innermost frame. Shares are of all the server's samples in the run, idle included, so an idle
server shows up as the event loop's ``select``. The thread pool's idle workers (waiting for
work that a pure-async request never sends them) are left out: py-spy cannot tell that they
wait, and they would otherwise be most of the samples.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RATE = 200  # samples a second: enough for 1 % shares in a 10 s run, little overhead
TOP = 120  # functions kept in the result file

# py-spy names a frame "function (path/to/file.py:line)"; the line is dropped so a function
# counts once whichever line of it was running.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(pid: int, out: Path, seconds: int) -> Iterator[None]:
    """py-spy records ``pid`` while the block runs (non-blocking: the server is not paused)."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    command = [binary, "record", "--pid", str(pid), "--rate", str(RATE)]
    command += ["--format", "raw", "--duration", str(seconds + 1), "-o", str(out)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            spy.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def _idle_worker(frames: list[str]) -> bool:
    """A thread-pool worker waiting for a job (not the event loop's thread)."""
    return any(f.startswith("WorkerThread.run ") for f in frames) and frames[-1].startswith(
        ("Condition.wait ", "Queue.get ", "Lock.acquire ")
    )


def summarise(paths: list[Path], top: int = TOP) -> dict[str, Any]:
    """Inclusive and own shares per function over one or more raw py-spy files."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            frames = [_name(f) for f in stack.split(";") if f.strip()]
            # py-spy --format raw puts the thread first ("process ...;thread (...)"): skip
            # frames that are not code.
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
            if not frames or _idle_worker(frames):
                continue
            total += samples
            for name in set(frames):
                inclusive[name] += samples
            own[frames[-1]] += samples
    if not total:
        return {"samples": 0, "inclusive": [], "own": []}

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "share": round(count / total, 4)}
            for name, count in counter.most_common(top)
        ]

    return {"samples": total, "rate_hz": RATE, "inclusive": shares(inclusive), "own": shares(own)}


def format_summary(key: str, summary: dict[str, Any], rows: int = 25) -> str:
    lines = [f"profile of {key}: {summary['samples']} samples (inclusive share, own share)"]
    own = {row["function"]: row["share"] for row in summary["own"]}
    for row in summary["inclusive"][:rows]:
        mine = own.get(row["function"], 0.0)
        lines.append(f"  {row['share'] * 100:5.1f} %  {mine * 100:5.1f} %  {row['function']}")
    return "\n".join(lines)
