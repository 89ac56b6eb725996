"""Load from wrk: one run against one URL, its figures read from a Lua ``done()`` hook as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WRK_HINT", "WrkResult", "run_wrk", "wrk_binary", "write_script"]

WRK_HINT = "wrk is not installed: apt-get install wrk (Debian/Ubuntu), or brew install wrk"

# wrk counts an answer with status >= 400 in errors.status; connect/read/write/timeout are socket errors.
_SCRIPT = """-- Written by bench/harness/load.py: the run's figures as one JSON line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"status":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def wrk_binary() -> str | None:
    """The wrk binary, or None when it is not installed."""
    return shutil.which("wrk") or (str(Path("/usr/bin/wrk")) if Path("/usr/bin/wrk").exists() else None)


def write_script(directory: Path) -> Path:
    """The Lua script beside the run's other files."""
    path = directory / "report.lua"
    path.write_text(_SCRIPT)
    return path


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    socket_errors: int  # connect + read + write + timeout
    http_errors: int  # answers with status >= 400
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Requests completed per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(script: Path, url: str, connections: int, seconds: int, headers: dict[str, str],
            threads: int = 2) -> WrkResult:
    """Run wrk for whole ``seconds`` (it takes no fractions) over ``connections``; its JSON line, parsed."""
    binary = wrk_binary()
    if binary is None:
        raise RuntimeError(WRK_HINT)
    command = [binary, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s",
               "--timeout", "10s", "-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    finished = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({finished.returncode}) on {url}:\n{finished.stdout}\n{finished.stderr}")
    data = json.loads(lines[-1])
    return WrkResult(
        requests=data["requests"], seconds=data["duration_us"] / 1e6,
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"], http_errors=data["status"],
        p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000)
