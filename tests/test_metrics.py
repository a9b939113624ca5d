"""``kanvaro.metrics``: the plain functions the domain calls (bounded labels), key-rotation
figures, the exposition, and the private multiprocess directory of ``kanvaro serve``.

The counters are process-wide, so every test compares before and after.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kanvaro import metrics
from kanvaro.audit.models import CATEGORIES


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("outcome", "counted_as"),
    [("success", "success"), ("failure", "failure"), ("throttled", "throttled"), ("x", "other")],
)
def test_sign_ins_are_counted_by_outcome_from_a_fixed_set(outcome, counted_as):
    before = _value("kanvaro_sign_ins_total", outcome=counted_as)
    metrics.count_sign_in(outcome)
    assert _value("kanvaro_sign_ins_total", outcome=counted_as) == before + 1
    assert REGISTRY.get_sample_value("kanvaro_sign_ins_total", {"outcome": "x"}) is None


def test_audit_appends_are_counted_by_category_from_the_audit_logs_own_list():
    assert metrics.AUDIT_CATEGORIES == CATEGORIES
    before = _value("kanvaro_audit_appends_total", category="financial")
    other = _value("kanvaro_audit_appends_total", category="other")
    metrics.observe_audit_append("financial")
    metrics.observe_audit_append(str(uuid.uuid4()))  # never a new series
    assert _value("kanvaro_audit_appends_total", category="financial") == before + 1
    assert _value("kanvaro_audit_appends_total", category="other") == other + 1


def test_the_sequencing_delay_is_a_histogram_and_never_negative():
    count = _value("kanvaro_audit_sequencing_delay_seconds_count")
    fast = _value("kanvaro_audit_sequencing_delay_seconds_bucket", le="0.001")
    metrics.observe_sequencing_delay(0.2)
    metrics.observe_sequencing_delay(-1.0)  # clock skew between hosts: counted as immediate
    assert _value("kanvaro_audit_sequencing_delay_seconds_count") == count + 2
    assert _value("kanvaro_audit_sequencing_delay_seconds_bucket", le="0.001") == fast + 1


def test_an_unknown_method_is_one_label_value():
    recorder = metrics.HttpRecorder()
    route = f"/test/{uuid.uuid4().hex}"
    recorder.started()
    recorder.finished(route, "BREW", 405, 0.001)
    recorder.started()
    recorder.finished(route, "SPAM", 405, 0.001)
    labels = {"route": route, "status": "405"}
    assert _value("kanvaro_http_requests_total", method="OTHER", **labels) == 2
    assert b"BREW" not in metrics.render()


@dataclass
class _Rotation:
    state: str
    total_rows: int
    done_rows: int
    reencrypted_rows: int
    unreadable_rows: int


def _families(latest: _Rotation | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.rotation_families(latest)
        for s in family.samples
    }


def test_rotation_progress_of_a_running_rotation():
    found = _families(_Rotation("running", 1000, 400, 390, 10))
    assert found[("kanvaro_key_rotation_running", ())] == 1
    assert found[("kanvaro_key_rotation_rows_remaining", ())] == 600
    assert found[("kanvaro_key_rotation_rows", (("state", "reencrypted"),))] == 390
    assert found[("kanvaro_key_rotation_rows", (("state", "unreadable"),))] == 10


def test_rotation_progress_without_a_rotation_or_after_one():
    assert _families(None) == {
        ("kanvaro_key_rotation_running", ()): 0,
        ("kanvaro_key_rotation_rows_remaining", ()): 0,
    }
    done = _families(_Rotation("completed", 10, 10, 10, 0))
    assert done[("kanvaro_key_rotation_running", ())] == 0
    assert done[("kanvaro_key_rotation_rows_remaining", ())] == 0


def test_render_adds_the_figures_read_at_scrape_time():
    text = metrics.render(metrics.rotation_families(None)).decode()
    assert "kanvaro_key_rotation_running 0.0" in text
    assert "# TYPE kanvaro_http_requests_total counter" in text
    assert "process_resident_memory_bytes" in text  # one process: its own collectors too


def test_the_multiprocess_directory_is_private_named_for_children_and_removed(tmp_path):
    legacy = metrics.MULTIPROCESS_ENV.lower()  # the spelling older clients read
    os.environ[legacy] = "/somewhere/else"  # an inherited stale value
    try:
        with metrics.multiprocess_directory(tmp_path) as path:
            assert path.is_dir()
            assert oct(path.stat().st_mode & 0o777) == "0o700"
            assert os.environ[metrics.MULTIPROCESS_ENV] == str(path)
            assert legacy not in os.environ
            (path / "counter_123.db").write_bytes(b"x")  # what a worker leaves behind
        assert not path.exists()
        assert metrics.MULTIPROCESS_ENV not in os.environ
        assert os.environ[legacy] == "/somewhere/else"
    finally:
        os.environ.pop(legacy, None)


def test_the_multiprocess_directory_falls_back_to_the_data_dir(tmp_path, monkeypatch):
    import tempfile

    # A temporary directory that cannot be used (a read-only container without a tmpfs).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "not-there"))
    data = tmp_path / "data"
    data.mkdir()
    with metrics.multiprocess_directory(data) as path:
        assert path.parent == data
    assert not path.exists()


def test_marking_a_worker_dead_outside_multiprocess_mode_does_nothing(tmp_path: Path):
    assert metrics.MULTIPROCESS_ENV not in os.environ
    metrics.mark_worker_dead(12345)  # no directory named: nothing to remove, no error
