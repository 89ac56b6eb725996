"""``make bench`` in quick mode, end to end: every contender answered, without errors, and the report written.

Speed is never asserted here (the targets are judged in the report, by ``make bench``): this proves the
harness itself works, so the benchmark cannot rot between full runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness.load import wrk_binary
from bench.harness.scenarios import rotated
from bench.harness.services import nginx_binary, start_python_upstream
from bench.instructions import CASES, per_request
from tests.gateway import ROOT

pytestmark = pytest.mark.e2e

_CI = os.environ.get("CI") == "true"


def _require(found: object, package: str) -> None:
    if not found:
        if _CI:
            pytest.fail(f"{package} is not installed (.ci/run installs the Debian package {package})")
        pytest.skip(f"{package} is not installed (apt-get install {package})")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One quick run of the whole benchmark; its JSON and markdown."""
    _require(wrk_binary(), "wrk")
    _require(shutil.which("redis-server") or os.access("/usr/bin/redis-server", os.X_OK), "redis-server")
    if _CI:
        _require(nginx_binary(), "nginx")
    out = tmp_path_factory.mktemp("bench")
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    # --baseline HEAD: the before/after rows and their comparison, with a second checkout of the same code.
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out-dir", str(out), "--baseline", "HEAD"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "benchmark.json").read_text()), (out / "benchmark.md").read_text()


def test_every_contender_of_every_scenario_answered_without_errors(report: tuple[dict[str, Any], str]) -> None:
    results, _ = report
    base = "@" + results["settings"]["baseline"]
    expected = {
        "passthrough": {"direct", "naive proxy", "forwarding floor", "bare flask", "frontdesk", f"frontdesk {base}"}
        | ({"nginx proxy"} if nginx_binary() else set()),
        "jwt": {"frontdesk pass-through", "frontdesk HS256 + limit", "frontdesk RS256 + limit",
                f"frontdesk HS256 + limit {base}"},
        "cache": {"bare flask", "frontdesk cache hit", f"frontdesk cache hit {base}"},
        "aggregation": {"direct (one call)", "frontdesk 3-way"},
        "slow": {"direct", "forwarding floor", "frontdesk", f"frontdesk {base}"},
        "unsaturated": {"direct", "forwarding floor", "frontdesk", f"frontdesk {base}"},
    }
    assert {key: set(scenario["contenders"]) for key, scenario in results["scenarios"].items()} == expected
    for key, scenario in results["scenarios"].items():
        for name, figures in scenario["contenders"].items():
            assert figures["requests"] > 0, (key, name)
            assert (figures["socket_errors"], figures["http_errors"]) == (0, 0), (key, name, figures)
            # CPU time comes from /proc in clock ticks (10 ms): in a one-second quick run a cheap
            # reference (the 100 ms upstream answering ~300 calls) can spend less than one tick.
            assert figures["cpu_us_per_request"] >= 0, (key, name)
            if name.startswith("frontdesk"):  # a gateway's second of work is always many ticks
                assert figures["cpu_us_per_request"] > 0, (key, name)
            assert figures["rss_mb_per_worker"] > 0, (key, name)
            assert 0 < figures["p50_ms"] <= figures["p99_ms"], (key, name)


def test_the_aggregate_waits_for_its_slow_parts_in_parallel(report: tuple[dict[str, Any], str]) -> None:
    # Not a speed target: a p50 under 100 ms would mean the parts were never called (the upstream waits 100 ms).
    results, _ = report
    assert results["scenarios"]["aggregation"]["contenders"]["frontdesk 3-way"]["p50_ms"] >= 100


def test_the_download_streamed_every_byte_through_each_contender(report: tuple[dict[str, Any], str]) -> None:
    results, _ = report
    contenders = results["download"]["contenders"]
    assert set(contenders) == {"direct", "frontdesk", "forwarding floor", "naive proxy"}
    assert all(figures["mib_per_s"] > 0 for figures in contenders.values())


def test_the_report_judges_every_target_and_names_the_machine(report: tuple[dict[str, Any], str]) -> None:
    results, page = report
    judged = {(target["scenario"].split(",")[0], target["target"]) for target in results["targets"]}
    assert len(judged) == 12
    assert all(isinstance(target["pass"], bool) for target in results["targets"])
    assert results["machine"]["cores"] == os.cpu_count()
    for heading in ("### Pass-through", "### Cache hit", "### Unsaturated", "## Targets (issue #22)", "## Machine"):
        assert heading in page
    assert "| frontdesk cache hit |" in page


def test_the_baseline_rows_are_compared_with_this_commits(report: tuple[dict[str, Any], str]) -> None:
    results, page = report
    rows = {(row["scenario"], row["row"]) for row in results["baseline"]}
    assert rows == {("Pass-through", "frontdesk"), ("JWT + Redis limit + pass-through", "frontdesk HS256 + limit"),
                    ("Cache hit", "frontdesk cache hit"), ("Saturated: slow upstream (100 ms)", "frontdesk"),
                    ("Unsaturated: 1 s upstream", "frontdesk")}
    assert all(row["rps_ratio"] > 0 and row["cpu_ratio"] > 0 for row in results["baseline"])
    assert f"## Against {results['settings']['baseline']}" in page


def test_each_round_runs_every_contender_once_starting_one_further() -> None:
    contenders = ("direct", "nginx", "naive", "floor")
    orders = [rotated(contenders, round_) for round_ in range(5)]
    assert orders[:2] == [["direct", "nginx", "naive", "floor"], ["nginx", "naive", "floor", "direct"]]
    assert orders[4] == orders[0]
    assert all(sorted(order) == sorted(contenders) for order in orders)
    assert len({order[0] for order in orders[:4]}) == 4  # no contender always first


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fast Python upstream bench.instructions calls."""
    service = start_python_upstream("upstream", tmp_path_factory.mktemp("upstream"), 0.0, 1024)
    yield service.url
    service.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_bench_instructions_drives_each_case_to_200(case: str, upstream: str) -> None:
    # The child refuses any answer but 200, so a case that stopped working cannot be counted quietly.
    done = subprocess.run([sys.executable, "-m", "bench.instructions", "--child", case, "3", upstream], cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_bench_instructions_counts_a_request_under_valgrind(upstream: str, tmp_path: Path) -> None:
    _require(shutil.which("valgrind"), "valgrind")
    count = per_request("bare", 5, upstream, tmp_path)
    assert 50_000 < count < 5_000_000  # a bare Flask request: hundreds of thousands, never start-up's billions
