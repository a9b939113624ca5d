"""Plain hooks for metrics on the audit log; no metrics library is imported here.

Register a callable and it is called for every event, in the process where it happens:

* ``appended``: an entry's change committed (its category, one of ``models.CATEGORIES``);
* ``sequenced``: an entry got its sequence number; the argument is the delay in seconds from
  the entry's ``createdAt`` (taken when the request wrote it) to the commit of the
  sequencer's transaction. It includes the rest of the request's transaction after the
  ``record()`` call, so it is an upper bound of the time an entry stays pending after its
  commit.

For example ``observe.sequenced.append(histogram.observe)``. A failing observer is logged and
never breaks sequencing or the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

log = structlog.get_logger("kanvaro.audit")

appended: list[Callable[[str], None]] = []
sequenced: list[Callable[[float], None]] = []


def _call(observers: list[Callable[[object], None]], value: object) -> None:
    for observer in observers:
        try:
            observer(value)
        except Exception as exc:
            log.warning("audit_observer_failed", error_type=type(exc).__name__)


def entry_appended(category: str) -> None:
    _call(appended, category)  # type: ignore[arg-type]


def entries_sequenced(delays: Iterable[float]) -> None:
    if sequenced:
        for delay in delays:
            _call(sequenced, delay)  # type: ignore[arg-type]
