"""The report: the issue's targets judged on one run's figures, as markdown and JSON, with the machine."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["compare", "evaluate", "machine", "markdown", "write"]

_PACKAGES = ("flask", "werkzeug", "gunicorn", "gevent", "requests", "urllib3", "flask-limiter", "pyjwt", "redis")


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def machine(root: Path, tools: dict[str, str | None]) -> dict[str, Any]:
    """CPU, cores, kernel, Python, package and tool versions, the commit, and the load before the run."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
        "packages": {name: importlib.metadata.version(name) for name in _PACKAGES},
        "nginx": _version([nginx, "-v"]) if (nginx := tools.get("nginx")) else "not installed",
        "wrk": _version([tools["wrk"] or "wrk", "-v"]).split(" [")[0],
        "redis": _version([tools.get("redis-server") or "redis-server", "--version"]).split(" sha=")[0],
        "commit": commit.stdout.strip() or "?",
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def _contender(results: dict[str, Any], scenario: str, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = results["scenarios"].get(scenario, {}).get("contenders", {}).get(name)
    return found


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue #22 with the measured ratio or figure and whether it is met."""
    targets: list[dict[str, Any]] = []

    def add(scenario: str, target: str, measured: float | None, ok: bool | None, unit: str = "×") -> None:
        targets.append({"scenario": scenario, "target": target,
                        "measured": None if measured is None else round(measured, 3), "unit": unit,
                        "pass": ok})

    gateway, floor, naive = (_contender(results, "passthrough", name)
                             for name in ("frontdesk", "forwarding floor", "naive proxy"))
    if gateway and floor:
        ratio = _ratio(gateway["cpu_us_per_request"], floor["cpu_us_per_request"])
        add("pass-through, 64 connections", "CPU/request ≤ 1.15× forwarding floor", ratio, ratio <= 1.15)
    if gateway and naive:
        ratio = _ratio(gateway["rps"], naive["rps"])
        add("pass-through, 64 connections", "throughput ≥ 1.7× naive proxy", ratio, ratio >= 1.7)
    plain = _contender(results, "jwt", "frontdesk pass-through")
    for algorithm in ("HS256", "RS256"):
        limited = _contender(results, "jwt", f"frontdesk {algorithm} + limit")
        if plain and limited:
            ratio = _ratio(limited["rps"], plain["rps"])
            add(f"JWT {algorithm} + Redis limit + pass-through", "throughput ≥ 0.75× own pass-through", ratio,
                ratio >= 0.75)
    hit, bare = _contender(results, "cache", "frontdesk cache hit"), _contender(results, "cache", "bare flask")
    if hit and bare:
        ratio = _ratio(hit["rps"], bare["rps"])
        add("cache hit", "throughput ≥ 0.75× bare Flask", ratio, ratio >= 0.75)
    # Behind a slow upstream the gateway is judged against the forwarding floor in front of the same upstream:
    # the most any Flask gateway carries there on the same cores (the upstream itself costs no CPU to wait).
    for key, label, throughput, tail in (("slow", "saturated slow upstream, 500 connections", 0.9, 1.5),
                                         ("unsaturated", "unsaturated 1 s upstream, 1,000 connections", 0.95, 1.2)):
        gateway, floor = _contender(results, key, "frontdesk"), _contender(results, key, "forwarding floor")
        if gateway and floor:
            ratio = _ratio(gateway["rps"], floor["rps"])
            add(label, f"throughput ≥ {throughput}× forwarding floor", ratio, ratio >= throughput)
            ratio = _ratio(gateway["p99_ms"], floor["p99_ms"])
            add(label, f"p99 ≤ {tail}× forwarding floor p99", ratio, ratio <= tail)
    aggregate = _contender(results, "aggregation", "frontdesk 3-way")
    if aggregate:
        add("3-way aggregation of 100 ms upstreams", "p50 ≤ 130 ms", aggregate["p50_ms"],
            aggregate["p50_ms"] <= 130, "ms")
    streamed = results.get("download", {}).get("contenders", {}).get("frontdesk")
    if streamed:
        add(results["download"]["title"], "gateway RSS grows by < 20 MB", streamed["rss_growth_mb"],
            streamed["rss_growth_mb"] < 20, "MB")
    errors = sum(figures["socket_errors"] + figures["http_errors"] for scenario in results["scenarios"].values()
                 for figures in scenario["contenders"].values())
    add("any scenario", "zero socket errors, zero unexpected non-2xx (every contender)", errors, errors == 0,
        "errors")
    return targets


def compare(results: dict[str, Any], base: str) -> list[dict[str, Any]]:
    """Each gateway row beside its baseline row (named ``"<row> <base>"``): the ratios this/base."""
    rows: list[dict[str, Any]] = []
    for scenario in results["scenarios"].values():
        contenders = scenario["contenders"]
        for name, before in contenders.items():
            after = contenders.get(name.removesuffix(f" {base}")) if name.endswith(f" {base}") else None
            if after:
                rows.append({"scenario": scenario["title"], "row": name.removesuffix(f" {base}"),
                             "rps_ratio": round(_ratio(after["rps"], before["rps"]), 3),
                             "cpu_ratio": round(_ratio(after["cpu_us_per_request"], before["cpu_us_per_request"]), 3),
                             "p99_ratio": round(_ratio(after["p99_ms"], before["p99_ms"]), 3)})
    return rows


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown(results: dict[str, Any], intro: str) -> str:
    """The whole report page."""
    lines = [intro.rstrip(), ""]
    for scenario in results["scenarios"].values():
        lines += [f"### {scenario['title']} ({scenario['connections']} connections)", "",
                  "| contender | req/s | p50 ms | p99 ms | CPU µs/req | errors (socket/HTTP) | RSS/worker MB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, f in scenario["contenders"].items():
            lines.append(f"| {name} | {_number(f['rps'])} | {_number(f['p50_ms'])} | {_number(f['p99_ms'])} | "
                         f"{_number(f['cpu_us_per_request'])} | {f['socket_errors']}/{f['http_errors']} | "
                         f"{f['rss_mb_per_worker']} |")
        lines.append("")
    if "download" in results:
        lines += [f"### {results['download']['title']}", "",
                  "| contender | MiB/s | seconds | peak RSS growth of the serving worker, MB |", "|---|---:|---:|---:|"]
        for name, f in results["download"]["contenders"].items():
            lines.append(f"| {name} | {_number(f['mib_per_s'])} | {f['seconds']} | {f['rss_growth_mb']} |")
        lines.append("")
    lines += ["## Targets (issue #22)", "", "| scenario | target | measured | result |", "|---|---|---:|---|"]
    for target in results["targets"]:
        verdict = "pass" if target["pass"] else "**FAIL**"
        lines.append(f"| {target['scenario']} | {target['target']} | {target['measured']} {target['unit']} | "
                     f"{verdict} |")
    if results.get("baseline"):
        base = results["settings"]["baseline"]
        lines += ["", f"## Against {base}", "",
                  f"The same gateway rows of this commit and of {base}, in the same rounds: ratios this/{base} "
                  "(throughput above 1 and CPU below 1 are better).", "",
                  "| scenario | row | req/s | CPU µs/req | p99 ms |", "|---|---|---:|---:|---:|"]
        for row in results["baseline"]:
            lines.append(f"| {row['scenario']} | {row['row']} | {row['rps_ratio']}× | {row['cpu_ratio']}× | "
                         f"{row['p99_ratio']}× |")
    m = results["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in m["packages"].items())
    lines += ["", "## Machine", "",
              f"- CPU: {m['cpu']}, {m['cores']} cores; kernel {m['kernel']}; Python {m['python']}",
              f"- {packages}", f"- {m['nginx']}; {m['wrk']}; {m['redis']}",
              f"- commit {m['commit']}; load average (1, 5, 15 min) before the run {m['load_average_at_start']}, "
              f"after it {m.get('load_average_at_end')}; "
              f"mode {results['settings']['mode']}: {results['settings']['rounds']} rounds of "
              f"{results['settings']['seconds']} s per contender, {results['settings']['warmup']} s warm-up, "
              f"{results['settings'].get('elapsed_s')} s in all",
              *([f"- {m['note']}"] if m.get("note") else []), ""]
    return "\n".join(lines)


def write(results: dict[str, Any], intro: str, markdown_path: Path, json_path: Path) -> None:
    """Both files, the JSON with every round's figures."""
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(markdown(results, intro))
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
