"""The pure parts of the benchmark harness (bench/loadtest) on canned wrk output: a broken
parser, ratio or result writer fails here, without servers and without timing anything."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import pytest
from bench.loadtest import plan, report, subbench, wrk
from bench.loadtest.runner import fill, rows_of
from bench.loadtest.seed import Seeded, parse_bootstrap

REPO = Path(__file__).resolve().parents[2]

WRK_OK = """\
Running 10s test @ http://127.0.0.1:40111
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    26.71ms    4.12ms  83.05ms   90.12%
    Req/Sec     1.20k    85.33     1.35k    76.00%
  Latency Distribution
     50%   25.90ms
     75%   27.45ms
     90%   30.12ms
     99%   48.77ms
  11963 requests in 10.01s, 9.40MB read
Requests/sec:   1195.16
Transfer/sec:      0.94MB
"""

WRK_ERRORS = """\
Running 2s test @ http://127.0.0.1:40112
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us    1.10ms   1.02s    99.10%
    Req/Sec     1.06k   120.00     1.20k    70.00%
  Latency Distribution
     50%  412.00us
     75%  520.00us
     90%  700.00us
     99%    1.20s
  2130 requests in 1.00m, 1.01MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 2130
Requests/sec:     35.50
Transfer/sec:     17.20KB
"""


def result(rps: float, p50: float = 10.0, p99: float = 50.0, non_2xx: int = 0) -> wrk.WrkResult:
    return wrk.WrkResult(
        requests=int(rps * 10),
        duration_s=10.0,
        rps=rps,
        latency_ms={"avg": p50, "stdev": 1.0, "max": p99 * 2, "p50": p50, "p99": p99},
        non_2xx=non_2xx,
    )


# --- the wrk output parser ------------------------------------------------------------------


def test_parse_reads_throughput_and_latency_distribution() -> None:
    parsed = wrk.parse(WRK_OK)
    assert parsed.requests == 11963
    assert parsed.duration_s == pytest.approx(10.01)
    assert parsed.rps == pytest.approx(1195.16)
    assert parsed.latency_ms == {
        "avg": 26.71,
        "stdev": 4.12,
        "max": 83.05,
        "p50": 25.9,
        "p75": 27.45,
        "p90": 30.12,
        "p99": 48.77,
    }
    assert parsed.errors == 0


def test_parse_converts_every_unit_and_counts_errors() -> None:
    parsed = wrk.parse(WRK_ERRORS)
    assert parsed.p50_ms == pytest.approx(0.412)
    assert parsed.p99_ms == pytest.approx(1200.0)
    assert parsed.latency_ms["max"] == pytest.approx(1020.0)
    assert parsed.duration_s == pytest.approx(60.0)
    assert parsed.non_2xx == 2130
    assert parsed.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert parsed.errors == 2135


@pytest.mark.parametrize(
    ("text", "ms"), [("812.00us", 0.812), ("1.25ms", 1.25), ("2.01s", 2010.0), ("1.50m", 90000.0)]
)
def test_duration_units(text: str, ms: float) -> None:
    assert wrk.duration_ms(text) == pytest.approx(ms)


def test_output_of_a_failed_run_is_refused() -> None:
    with pytest.raises(wrk.WrkOutputError):
        wrk.parse("unable to connect to 127.0.0.1:40111 Connection refused\n")
    without_distribution = WRK_OK.replace("  Latency Distribution\n", "")
    with pytest.raises(wrk.WrkOutputError):
        wrk.parse(without_distribution)


def test_wrk_command_pins_the_client_core_and_keeps_tokens_off_argv(tmp_path: Path) -> None:
    argv = wrk.WrkOptions(connections=1, duration_s=7, core=1).argv(tmp_path / "s.lua", "http://x")
    assert argv[:3] == ["taskset", "-c", "1"]
    assert {"-t1", "-c1", "-d7s", "--latency", "--timeout=10s"} <= set(argv)
    assert not any("Bearer" in a for a in argv)


# --- ratios, targets, the table ------------------------------------------------------------


def test_ratio_is_the_median_of_per_round_ratios() -> None:
    subject = [result(100), result(300), result(120)]
    baseline = [result(100), result(100), result(200)]
    row = report.compare("read", subject, baseline, report.Target.ratio(1.2))
    assert row["ratio_per_round"] == [1.0, 3.0, 0.6]
    assert row["ratio"] == 1.0  # the median of the rounds' ratios, not 173.3 / 133.3
    assert row["rps"] == 120.0
    assert row["passed"] is False
    assert row["target"] == ">= 1.2x"


def test_targets_pass_and_fail_on_their_own_measure() -> None:
    fast = [result(700, p99=80.0)]
    assert report.compare("refresh", fast, None, report.Target.rps(600))["passed"] is True
    assert report.compare("refresh", [result(500)], None, report.Target.rps(600))["passed"] is False
    assert report.compare("p99", fast, None, report.Target.p99(100))["passed"] is True
    slow = [result(700, p99=100.0)]
    assert report.compare("p99", slow, None, report.Target.p99(100))["passed"] is False
    assert report.compare("info", fast, None, None)["passed"] is None


def test_errors_fail_a_row_whatever_its_speed() -> None:
    row = report.compare(
        "write", [result(5000, non_2xx=3)], [result(1000)], report.Target.ratio(0.7)
    )
    assert row["ratio"] == 5.0
    assert row["errors"] == 3
    assert row["passed"] is False
    baseline_errors = report.compare(
        "write", [result(900)], [result(1000, non_2xx=1)], report.Target.ratio(0.7)
    )
    assert baseline_errors["passed"] is False


def test_server_cpu_share_is_a_median_over_rounds() -> None:
    runs = [
        dataclasses.replace(result(100), cpu={"server_cpu_share": share, "core0_busy_share": 1.0})
        for share in (0.5, 0.98, 0.97)
    ]
    summary = report.summarize_load(runs)
    assert summary["server_cpu_share"] == 0.97
    assert summary["core0_busy_share"] == 1.0
    assert summary["rounds"][0]["cpu"]["server_cpu_share"] == 0.5


def test_rounds_must_pair_up() -> None:
    with pytest.raises(ValueError):
        report.compare("x", [result(1), result(2)], [result(1)], None)


def test_signin_overhead_is_the_median_of_each_sign_in_minus_its_hash() -> None:
    # The machine slows down halfway: paired, the overhead stays 4 ms (the difference of the
    # two medians, 40 - 26, would say 14).
    row = report.signin_row(
        "sign-in", [30.0, 31.0, 40.0, 50.0], [26.0, 27.0, 36.0, 46.0], report.Target.overhead(5)
    )
    assert row["p50_ms"] == 35.5
    assert row["hash_ms"] == 31.5
    assert row["overhead_ms"] == 4.0
    assert row["passed"] is True
    with pytest.raises(ValueError):
        report.signin_row("sign-in", [30.0, 31.0], [26.0], report.Target.overhead(5))
    slower = report.signin_row("sign-in", [32.5], [26.0], report.Target.overhead(5))
    assert slower["passed"] is False


def test_table_has_one_line_per_row_and_rounds_ratios_down() -> None:
    rows = [
        report.compare("bare ORM read (baseline)", [result(1000)], None, None),
        report.compare(
            "secured read / bare ORM read", [result(1196)], [result(1000)], report.Target.ratio(1.2)
        ),
        report.signin_row("sign-in", [31.0], [26.0], report.Target.overhead(5)),
    ]
    table = report.format_table(rows).splitlines()
    assert table[0].split()[:3] == ["scenario", "req/s", "p50"]
    assert len(table) == 2 + len(rows)
    assert "1.19x" in table[3] and "FAIL" in table[3]  # 1.196 never shows as 1.20x next to FAIL
    assert "1,000" in table[2]
    assert "pass" in table[4]


# --- the result document --------------------------------------------------------------------


def test_result_path_keeps_a_full_run_apart_from_partial_ones(tmp_path: Path) -> None:
    day = date(2026, 12, 2)
    assert report.result_path(tmp_path, day).name == "2026-12-02.json"
    assert report.result_path(tmp_path, day, "quick").name == "2026-12-02-quick.json"


def test_write_document_is_atomic_json(tmp_path: Path) -> None:
    rows = [report.compare("read", [result(120)], [result(100)], report.Target.ratio(1.2))]
    path = report.write_document(tmp_path / "results" / "2026-12-02.json", {"results": rows})
    assert json.loads(path.read_text())["results"][0]["ratio"] == 1.2
    assert list(path.parent.iterdir()) == [path]  # no *.tmp left behind


def test_sub_benchmark_json_is_found_after_other_output() -> None:
    printed = 'warming up {not json}\n{\n  "appends": 1500,\n  "nested": {"a": 1}\n}\n'
    assert subbench.last_json_object(printed) == {"appends": 1500, "nested": {"a": 1}}
    with pytest.raises(ValueError):
        subbench.last_json_object("Traceback ...\n")


# --- the plan -------------------------------------------------------------------------------


SEEDED = Seeded(
    tenant_id="00000000-0000-0000-0000-00000000000a",
    admin=None,  # type: ignore[arg-type]
    member=None,  # type: ignore[arg-type]
    project_id="00000000-0000-0000-0000-00000000000b",
    writes_project_id="00000000-0000-0000-0000-00000000000c",
    task_ids=[],
)


def test_every_comparison_names_loads_of_its_group_and_scripts_exist() -> None:
    for group in plan.GROUPS:
        keys = {load.key for load in group.loads}
        for comparison in group.comparisons:
            assert comparison.subject in keys
            assert comparison.baseline is None or comparison.baseline in keys
        for load in group.loads:
            assert (REPO / "bench" / "lua" / load.script).is_file()
    assert len(set(plan.NAMES)) == len(plan.NAMES)


def test_write_bodies_are_json_once_filled() -> None:
    for group in plan.GROUPS:
        for load in group.loads:
            if load.body:
                body = json.loads(fill(load.body, SEEDED))
                assert body["projectId"] == SEEDED.writes_project_id


def test_rounds_alternate_their_order() -> None:
    group = plan.GROUPS[0]
    assert plan.round_order(group, 1) == plan.round_order(group, 0)[::-1]


def test_rows_of_a_group_list_baselines_then_comparisons() -> None:
    group = next(g for g in plan.GROUPS if g.name == "write")
    runs = {load.key: [result(500 if "kanvaro" in load.key else 1000)] for load in group.loads}
    rows = rows_of(group, runs)
    baselines = [r for r in rows if r["scenario"].endswith("(baseline)")]
    assert len(baselines) == 2
    assert rows[: len(baselines)] == baselines
    ratio_rows = [r for r in rows if r.get("ratio") is not None]
    assert {r["ratio"] for r in ratio_rows} == {0.5}
    assert all(r["group"] == "write" for r in rows)


def test_bootstrap_output_names_the_tenant() -> None:
    out = "created tenant bench (0b6c1f4e-2f7a-4c59-9a51-2a8d0f3c9e11)\ncreated admin a@b.example\n"
    assert parse_bootstrap(out) == ("bench", "0b6c1f4e-2f7a-4c59-9a51-2a8d0f3c9e11")
    with pytest.raises(RuntimeError):
        parse_bootstrap("bootstrap failed")


def test_profile_shares_count_a_function_once_per_sample(tmp_path: Path) -> None:
    from bench.loadtest import profile

    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "main (a.py:1);handle (site-packages/app/b.py:10);handle (site-packages/app/b.py:12);"
        "query (src/kanvaro/c.py:3) 3\n"
        "main (a.py:1);idle (a.py:9) 1\n"
        # An idle thread-pool worker: not server work, left out.
        "_bootstrap (threading.py:1);run (site-packages/anyio/_backends/_asyncio.py:2);"
        "WorkerThread.run (site-packages/anyio/_backends/_asyncio.py:3);"
        "Condition.wait (threading.py:4) 40\n"
        "not a stack line\n"
    )
    summary = profile.summarise([raw, tmp_path / "missing.txt"])
    inclusive = {r["function"]: r["share"] for r in summary["inclusive"]}
    own = {r["function"]: r["share"] for r in summary["own"]}
    assert summary["samples"] == 4
    # Recursion (two lines of one function on a stack) counts once per sample.
    assert inclusive["handle (app/b.py)"] == 0.75
    assert inclusive["main (a.py)"] == 1.0
    assert own == {"query (kanvaro/c.py)": 0.75, "idle (a.py)": 0.25}
    assert "75.0 %" in profile.format_summary("read", summary)


def test_the_run_signs_in_as_a_known_device() -> None:
    from bench.loadtest.seed import Account

    plain = Account("a@kanvaro.example", "pw", "t")
    assert "deviceToken" not in plain.login_body()
    known = Account("a@kanvaro.example", "pw", "t", device_token="secret.proof")
    assert known.login_body()["deviceToken"] == "secret.proof"
    assert "secret" not in repr(known) and "pw" not in repr(known)
