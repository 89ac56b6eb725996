"""``make bench``: Frontdesk side by side with reference servers in one run, written up as a report.

Run: ``.venv/bin/python -m bench.run [--quick] [--out-dir DIR] [--baseline REF]``. Everything is started
here on 127.0.0.1 and stopped by pid at the end: a fast upstream (nginx when installed, else
bench/upstream_server.py), a slow upstream answering after 100 ms and a long one answering after 1 s
(bench/upstream_server.py), a private redis-server, the gateway under gunicorn gevent workers with the
production settings and a generated file (bench/harness/gateway.py), and the references under the same
gunicorn settings. ``--baseline REF`` also serves the gateway of commit REF (a temporary git worktree, the
same file and settings) in the same rounds, for before/after figures. Load comes from wrk. Writes
``benchmark.md`` and ``benchmark.json`` into the output directory (docs/ by default). The targets of
issue #22 are judged in the report; missing one does not fail the run (speed is reported, never
asserted), a server that fails to start or a wrk that fails does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness.gateway import HS_SECRET, gateway_toml, mint_hs256, mint_rs256, public_pem, rsa_key
from bench.harness.load import WRK_HINT, wrk_binary, write_script
from bench.harness.procs import Service, wait_http
from bench.harness.report import compare, evaluate, machine, write
from bench.harness.scenarios import Contender, Scenario, download, run_scenario
from bench.harness.services import (ROOT, nginx_binary, start_gunicorn, start_nginx_proxy, start_nginx_upstream,
                                    start_python_upstream, start_redis)
from settings.base import Base

WORKERS = 2
SLOW_DELAY = 0.1
#: The unsaturated scenario's upstream: 1,000 connections each waiting a second leave the CPU mostly idle.
LONG_DELAY = 1.0
MODES = {  # rounds, seconds per contender and round, warm-up seconds, size of the download
    "full": (3, 8, 2, 100 * 1024 * 1024),
    "quick": (1, 1, 0, 16 * 1024 * 1024),
}

_INTRO = """# Benchmark

Produced by `make bench` (`python -m bench.run`); `make bench-quick` runs the same harness for a
second per contender. Everything runs on one machine, on 127.0.0.1: the load generator (wrk, 2
threads), the upstreams, Redis and every contender share its cores, so compare the rows of one run
with each other, not with another machine's.

- **Contenders**, each with {workers} gevent workers under the project's `gunicorn.conf.py`
  (`--no-control-socket`): **frontdesk** (`GATEWAY_ENV=production` and a generated file: metrics,
  the JSON access log at INFO, to a file, and the edge protections as shipped); **direct** (the
  upstream itself, {upstream}); **nginx proxy** (a plain `proxy_pass` with keep-alive upstream
  connections, {workers} workers, access log to a file); **naive proxy** (`bench/naive_proxy.py`, a Flask
  view forwarding with a `requests` Session); **forwarding floor** (`bench/floor_proxy.py`, a Flask view
  forwarding through one urllib3 pool, nothing else; one more in front of the slow upstream and one in
  front of the long one, in those scenarios: the most a Flask gateway carries there on this machine);
  **bare flask**
  (`bench/bare_app.py`, the same small JSON body from a Flask view).
- **Method**: the rounds are interleaved (each round runs every contender of a scenario once, in an order
  that rotates from round to round) and the median of the rounds is shown; errors are summed over the
  rounds. CPU µs per request is the growth of utime + stime of the contender's processes (master and
  workers, from `/proc`) divided by the requests wrk completed: the server's own cost, without the load
  generator's or the upstream's (Redis's CPU is not in the gateway's either). RSS is VmRSS per worker
  after the scenario.
- **Upstream capacity**: the gateway's defaults are `pool_size` {pool_size} idle connections per target
  per worker and `max_in_flight` {max_in_flight} calls per upstream per worker; gunicorn allows
  {worker_connections} connections per worker. At 500 connections over {workers} workers about 250
  calls per worker are in flight to the slow upstream: more than the pool keeps, so connections
  beyond {pool_size} per worker are opened for one call and closed (urllib3 logs "Connection pool is full"
  for each). The run uses the defaults as shipped; raise `pool_size` for such an upstream.
- **Slow and long upstreams**: the saturated scenario sends 500 connections to an upstream answering
  after 100 ms (the workers' CPU is the limit); the unsaturated one sends 1,000 connections to an
  upstream answering after 1 s (about 1,000 requests a second: the CPU is mostly idle, so what shows is
  the time the gateway adds to each call). Its upstream's `max_in_flight` is raised to 1,000 in the
  generated file, as an operator would for such an upstream: gunicorn does not share connections evenly
  between workers, and the default cap of 500 calls per worker answered about 20 % of them 503 at once.
- **Targets** are the ones of issue #22, judged on this run's ratios. {baseline}

## Results
"""


def _raise_file_limit() -> None:
    # 500 client connections plus as many upstream ones, per process: inherited by every child.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


@contextlib.contextmanager
def checkout(ref: str | None) -> Iterator[Path | None]:
    """Commit ``ref`` checked out in a temporary git worktree (removed at the end); None without one."""
    if not ref:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="frontdesk-bench-base-"))
    subprocess.run(["git", "worktree", "add", "--quiet", "--detach", str(directory), ref], cwd=ROOT, check=True)
    try:
        yield directory
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(directory)], cwd=ROOT, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def _start(work: Path, big_bytes: int, services: list[Service],
           base: Path | None) -> tuple[dict[str, Service], dict[str, str]]:
    """Every server of the run, started and answering (appended to ``services`` as they start); tokens."""
    www = work / "www"
    www.mkdir()
    with open(www / "big", "wb") as big:
        big.truncate(big_bytes)  # sparse: no 100 MB of disk writes for zeros
    fast = (start_nginx_upstream(work / "nginx-upstream", www / "big") if nginx_binary()
            else start_python_upstream("fast upstream", work, 0.0, big_bytes))
    services.append(fast)
    slow = start_python_upstream("slow upstream", work, SLOW_DELAY, big_bytes)
    services.append(slow)
    long = start_python_upstream("long upstream", work, LONG_DELAY, big_bytes)
    services.append(long)
    redis = start_redis(work)
    services.append(redis)
    key = rsa_key()
    (work / "rs256.pem").write_bytes(public_pem(key))
    started: dict[str, Service] = {"fast": fast, "slow": slow, "long": long}
    gateways = [("HS256", ROOT), ("RS256", ROOT), *([("base", base)] if base else [])]
    for name, root in gateways:
        algorithm = "RS256" if name == "RS256" else "HS256"
        config = work / f"gateway-{name}.toml"
        config.write_text(gateway_toml(fast.url, slow.url, long.url, redis.url, algorithm,
                                       work / "rs256.pem" if algorithm == "RS256" else None))
        env = {"GATEWAY_ENV": "production", "GATEWAY_CONFIG": str(config)}
        if algorithm == "HS256":
            env["GATEWAY_AUTH__JWT__SECRET"] = HS_SECRET
        started[name] = start_gunicorn(f"frontdesk {name}", work, None, env, WORKERS, root)
        services.append(started[name])
    # The floor runs three times: in front of the fast upstream, the slow one and the long one (the most any
    # Flask gateway carries at 500 or 1,000 connections on this machine, for those scenarios).
    for name, app, upstream in (("naive", "bench.naive_proxy:app", fast), ("floor", "bench.floor_proxy:app", fast),
                                ("bare", "bench.bare_app:app", fast), ("floor slow", "bench.floor_proxy:app", slow),
                                ("floor long", "bench.floor_proxy:app", long)):
        env = {"GATEWAY_SKIP_PREFLIGHT": "1", "BENCH_UPSTREAM": upstream.url}
        started[name] = start_gunicorn(name, work, app, env, WORKERS)
        services.append(started[name])
    if nginx_binary():
        started["nginx"] = start_nginx_proxy(work / "nginx-proxy", fast.url, WORKERS)
        services.append(started["nginx"])
    for name, _ in gateways:
        wait_http(started[name], "/livez", WORKERS)
    for name in ("naive", "floor", "bare", "floor slow", "floor long"):
        wait_http(started[name], "/json", WORKERS)
    return started, {"HS256": mint_hs256(), "RS256": mint_rs256(key)}


def _scenarios(s: dict[str, Service], tokens: dict[str, str], base: str) -> list[Scenario]:
    """The scenarios; ``base`` names the baseline gateway's rows ("" without one)."""
    hs, rs = ({"Authorization": f"Bearer {tokens[algorithm]}"} for algorithm in ("HS256", "RS256"))
    reference = [Contender("direct", s["fast"], "/json")]
    if "nginx" in s:
        reference.append(Contender("nginx proxy", s["nginx"], "/json"))

    def before(name: str, path: str, headers: dict[str, str] | None = None) -> tuple[Contender, ...]:
        return (Contender(f"{name} {base}", s["base"], path, headers or {}),) if base else ()

    return [
        Scenario("passthrough", "Pass-through", 64, (
            *reference, Contender("naive proxy", s["naive"], "/json"),
            Contender("forwarding floor", s["floor"], "/json"), Contender("bare flask", s["bare"], "/json"),
            Contender("frontdesk", s["HS256"], "/pass/json"), *before("frontdesk", "/pass/json"))),
        Scenario("jwt", "JWT + Redis limit + pass-through", 64, (
            Contender("frontdesk pass-through", s["HS256"], "/pass/json"),
            Contender("frontdesk HS256 + limit", s["HS256"], "/jwt/json", hs),
            Contender("frontdesk RS256 + limit", s["RS256"], "/jwt/json", rs),
            *before("frontdesk HS256 + limit", "/jwt/json", hs))),
        Scenario("cache", "Cache hit", 64, (
            Contender("bare flask", s["bare"], "/json"), Contender("frontdesk cache hit", s["HS256"], "/cached/json"),
            *before("frontdesk cache hit", "/cached/json"))),
        Scenario("aggregation", "3-way aggregation of 100 ms upstreams", 32, (
            Contender("direct (one call)", s["slow"], "/a"), Contender("frontdesk 3-way", s["HS256"], "/aggregate"))),
        Scenario("slow", "Saturated: slow upstream (100 ms)", 500, (
            Contender("direct", s["slow"], "/json"), Contender("forwarding floor", s["floor slow"], "/json"),
            Contender("frontdesk", s["HS256"], "/slow/json"), *before("frontdesk", "/slow/json"))),
        Scenario("unsaturated", "Unsaturated: 1 s upstream", 1000, (
            Contender("direct", s["long"], "/json"), Contender("forwarding floor", s["floor long"], "/json"),
            Contender("frontdesk", s["HS256"], "/long/json"), *before("frontdesk", "/long/json")),
            min_seconds=4),
    ]


def run(mode: str, out_dir: Path, note: str = "", baseline: str | None = None) -> dict[str, Any]:
    """Start everything, measure every scenario, stop everything; the results (also written to out_dir)."""
    rounds, seconds, warmup, big_bytes = MODES[mode]
    tools = {"wrk": wrk_binary(), "nginx": nginx_binary(), "redis-server": shutil.which("redis-server")}
    results: dict[str, Any] = {
        "machine": machine(ROOT, tools),
        "settings": {"mode": mode, "rounds": rounds, "seconds": seconds, "warmup": warmup, "workers": WORKERS},
        "scenarios": {},
    }
    services: list[Service] = []
    started_at = time.monotonic()
    base = ""
    if baseline:
        found = subprocess.run(["git", "rev-parse", "--short", baseline], cwd=ROOT, capture_output=True, text=True)
        base = f"@{found.stdout.strip() or baseline}"
        results["settings"]["baseline"] = base[1:]
    with tempfile.TemporaryDirectory(prefix="frontdesk-bench-") as directory, checkout(baseline) as base_root:
        try:
            started, tokens = _start(Path(directory), big_bytes, services, base_root)
            script = write_script(Path(directory))
            for scenario in _scenarios(started, tokens, base):
                print(f"bench: {scenario.title} ...", file=sys.stderr, flush=True)
                results["scenarios"][scenario.key] = run_scenario(scenario, script, rounds, seconds, warmup)
            print("bench: download ...", file=sys.stderr, flush=True)
            results["download"] = download((
                Contender("direct", started["fast"], "/big"), Contender("frontdesk", started["HS256"], "/big"),
                Contender("forwarding floor", started["floor"], "/big"),
                Contender("naive proxy", started["naive"], "/big")), big_bytes, rounds)
        finally:
            for service in reversed(services):
                service.stop()
    results["settings"]["elapsed_s"] = round(time.monotonic() - started_at, 1)
    results["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    results["machine"]["note"] = note
    results["targets"] = evaluate(results)
    if base:
        results["baseline"] = compare(results, base)
    before = (f"Rows named `{base}` are the gateway of that commit, served from a temporary worktree with the "
              f"same file and settings in the same rounds; the section after the targets compares them."
              if base else "")
    intro = _INTRO.format(baseline=before, workers=WORKERS,
                          upstream="nginx" if tools["nginx"] else "bench/upstream_server.py",
                          pool_size=Base.UPSTREAM_DEFAULTS["pool_size"],
                          max_in_flight=Base.UPSTREAM_DEFAULTS["max_in_flight"], worker_connections=4096)
    write(results, intro, out_dir / "benchmark.md", out_dir / "benchmark.json")
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run; 2 when wrk or redis-server is missing."""
    parser = argparse.ArgumentParser(description="Frontdesk's benchmark against reference servers.")
    parser.add_argument("--quick", action="store_true", help="one round of one second per contender")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where benchmark.md/.json go (docs/; quick mode: a directory under the temp dir)")
    parser.add_argument("--note", default="", help="a line for the report's machine section (what else ran)")
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="also serve the gateway of this commit in the same rounds (before/after figures)")
    arguments = parser.parse_args(argv)
    # A quick run's figures are too rough to replace the committed report by accident.
    out_dir: Path = arguments.out_dir or (Path(tempfile.gettempdir()) / "frontdesk-bench-quick" if arguments.quick
                                          else ROOT / "docs")
    if wrk_binary() is None:
        print(f"bench: {WRK_HINT}", file=sys.stderr)
        return 2
    if shutil.which("redis-server") is None:
        print("bench: redis-server is not installed: apt-get install redis-server", file=sys.stderr)
        return 2
    _raise_file_limit()
    results = run("quick" if arguments.quick else "full", out_dir, arguments.note, arguments.baseline)
    failed = [target for target in results["targets"] if not target["pass"]]
    print(f"bench: report written to {out_dir}/benchmark.md ({len(failed)} of "
          f"{len(results['targets'])} targets missed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
