"""Prometheus metrics of a Kanvaro process (prometheus-client); no web framework here.

What is measured: HTTP requests by route *template* (``/api/v1/projects/{project_id}``, never
the raw path, whose ids and tokens would explode the series count and leak), method and
status; request latency; requests in progress per worker; sign-ins by outcome; audit appends;
the audit sequencing delay. Key-rotation progress is read from the database at scrape time
(``rotation_families``), because only the database knows it across processes.

Several workers (``kanvaro serve --workers N``) share one set of figures through
prometheus-client's multiprocess mode: each process writes its values to memory-mapped files
in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape, answered by any worker, sums them. The mode is
chosen when prometheus-client is first imported, from that variable, so ``kanvaro serve``
sets it (``multiprocess_directory``) before it starts the workers.

The plain functions (``count_sign_in``, ``observe_audit_append``, ``observe_sequencing_delay``)
are what the domain code calls; their labels come from fixed sets, so no caller can create
unbounded series.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Decided once, as prometheus-client decided it when it was imported.
MULTIPROCESS = values.ValueClass is not values.MutexValue

UNMATCHED_ROUTE = "unmatched"  # no route matched (404 before routing); templates start with "/"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
SIGN_IN_OUTCOMES = ("success", "failure", "throttled", "other")
# kanvaro.audit.models.CATEGORIES (audit sits above this core; a test keeps the two equal).
AUDIT_CATEGORIES = (
    "user_activity",
    "business_operations",
    "financial",
    "system",
    "permissions",
    "authentication",
)

# Seconds. A read answers in a few ms, a sign-in in ~40 ms (argon2id), an export in seconds.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SEQUENCING_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "kanvaro_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ("route", "method", "status"),
)
HTTP_LATENCY = Histogram(
    "kanvaro_http_request_duration_seconds",
    "Time from receiving a request to the end of its response, by route template and method.",
    ("route", "method"),
    buckets=LATENCY_BUCKETS,
)
# Per worker (a pid label in multiprocess mode; a dead worker's series is dropped): a worker
# stuck with requests while its peers are idle shows here.
HTTP_IN_PROGRESS = Gauge(
    "kanvaro_http_requests_in_progress",
    "Requests being answered, per worker process.",
    multiprocess_mode="liveall",
)
SIGN_INS = Counter("kanvaro_sign_ins", "Sign-in attempts, by outcome.", ("outcome",))
AUDIT_APPENDS = Counter(
    "kanvaro_audit_appends",
    "Audit entries committed, by category (never by tenant: ids would leak and multiply).",
    ("category",),
)
SEQUENCING_DELAY = Histogram(
    "kanvaro_audit_sequencing_delay_seconds",
    "Time from an audit entry's commit to its place in the hash chain.",
    buckets=SEQUENCING_BUCKETS,
)

# Label children resolved once: ``labels()`` takes a lock and builds a tuple on every call.
_SIGN_INS = {outcome: SIGN_INS.labels(outcome) for outcome in SIGN_IN_OUTCOMES}
_AUDIT_APPENDS = {c: AUDIT_APPENDS.labels(c) for c in (*AUDIT_CATEGORIES, "other")}


def count_sign_in(outcome: str) -> None:
    """One sign-in attempt: ``success``, ``failure`` (any 401) or ``throttled`` (429)."""
    _SIGN_INS.get(outcome, _SIGN_INS["other"]).inc()


def observe_audit_append(category: str) -> None:
    """One audit entry committed (``kanvaro.audit.observe.appended`` calls this)."""
    _AUDIT_APPENDS.get(category, _AUDIT_APPENDS["other"]).inc()


def observe_sequencing_delay(seconds: float) -> None:
    """How long an audit entry waited for its sequence number (``kanvaro.audit.observe.
    sequenced`` calls this)."""
    SEQUENCING_DELAY.observe(max(seconds, 0.0))


class HttpRecorder:
    """What the metrics middleware records per request, with the label children cached by
    (route template, method, status): a bounded set, since templates and methods are."""

    __slots__ = ("_children",)

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @staticmethod
    def started() -> None:
        HTTP_IN_PROGRESS.inc()

    def finished(self, route: str, method: str, status: int, seconds: float) -> None:
        HTTP_IN_PROGRESS.dec()
        if method not in METHODS:
            method = OTHER_METHOD  # a client may send any token as a method
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                HTTP_REQUESTS.labels(route, method, str(status)),
                HTTP_LATENCY.labels(route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class Rotation(Protocol):
    """What the scrape reads of the latest data-key rotation (a ``KeyRotation`` row)."""

    state: str
    total_rows: int
    done_rows: int
    reencrypted_rows: int
    unreadable_rows: int


def rotation_families(latest: Rotation | None) -> list[Metric]:
    """Key-rotation progress of the instance, from its latest rotation (None: never rotated)."""
    running = GaugeMetricFamily(
        "kanvaro_key_rotation_running", "1 while a data-key rotation is re-encrypting rows."
    )
    rows = GaugeMetricFamily(
        "kanvaro_key_rotation_rows",
        "Rows of the latest data-key rotation, by state.",
        labels=("state",),
    )
    remaining = GaugeMetricFamily(
        "kanvaro_key_rotation_rows_remaining", "Rows the latest rotation has still to visit."
    )
    running.add_metric([], 1 if latest is not None and latest.state == "running" else 0)
    if latest is None:
        remaining.add_metric([], 0)
        return [running, rows, remaining]
    total, done = latest.total_rows or 0, latest.done_rows or 0
    for state, value in (
        ("total", total),
        ("done", done),
        ("reencrypted", latest.reencrypted_rows or 0),
        ("unreadable", latest.unreadable_rows or 0),
    ):
        rows.add_metric([state], value)
    remaining.add_metric([], max(total - done, 0))
    return [running, rows, remaining]


class _Figures:
    """A collector of figures read just before the scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The text exposition: every worker's figures (multiprocess) or this process's (with the
    process_* and python_* collectors), then ``extra``."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    figures = CollectorRegistry()
    figures.register(_Figures(extra))  # type: ignore[arg-type]
    return output + generate_latest(figures)


@contextmanager
def multiprocess_directory(fallback_parent: Path) -> Iterator[Path]:
    """A private directory (0700) for the workers' metric files, named in
    ``PROMETHEUS_MULTIPROC_DIR`` for every process started inside the block, and removed after
    it: files of an earlier run would otherwise be summed into this one's figures.

    The temporary directory (a tmpfs in the container) is preferred: the files are written on
    every request. ``fallback_parent`` (the data directory) serves when it is not writable.
    """
    try:
        path = Path(tempfile.mkdtemp(prefix="kanvaro-metrics-"))
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="kanvaro-metrics-", dir=fallback_parent))
    names = (MULTIPROCESS_ENV, MULTIPROCESS_ENV.lower())  # the client reads both spellings
    previous = {name: os.environ.pop(name, None) for name in names}
    os.environ[MULTIPROCESS_ENV] = str(path)
    try:
        yield path
    finally:
        for name, value in previous.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        shutil.rmtree(path, ignore_errors=True)


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's per-process series (its counters stay in the sums)."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid)
