"""The garbage collector's settings of a server process.

A full collection walks every tracked object of the heap. A served app holds a few hundred
thousand of them from its imports and startup (modules, classes, compiled statements,
schemas), none of them ever garbage, and CPython's default thresholds (700, 10, 10) ran a
young collection every few requests and a full one every few seconds: each full one stopped the
event loop for tens of milliseconds, which was most of the p99 of reads and writes
(``docs/performance.md``, issue 9). So once the app is loaded its objects are frozen (moved to
a generation the collector never scans) and the collections come less often. Reference
counting still frees all acyclic garbage at once; only cycles wait a little longer.
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 20, 20)


def settle_heap() -> None:
    """Collect what startup left, freeze the rest, and space the collections out."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
