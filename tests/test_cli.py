"""``flask gateway routes`` and ``flask gateway check``: what operators and CI read."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Blueprint
from flask.testing import FlaskCliRunner

from app import ConfigError, Upstream, create_app
from app.__main__ import main
from app.auth import require_auth
from app.caching import cache_response
from app.operators.check import REFUSED, check_config
from app.edge.guard import edge_policy
from app.ratelimit import by_consumer, limiter
from tests.conftest import AppFactory
from tests.gateway import Gateway

NOWHERE = "http://127.0.0.1:9"
ERROR_PREFIX = "frontdesk: configuration error: "


@pytest.fixture(autouse=True)
def testing_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check reads os.environ: only what a test sets, on the testing settings."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_ENV", "testing")
    monkeypatch.setenv("GATEWAY_WORKERS", "1")  # no per-worker rate limit warning in the output


def billing_blueprint() -> Blueprint:
    """A route family the project does not have: the CLI must list it from the app alone."""
    bp = Blueprint("billing", __name__, url_prefix="/billing")
    Upstream("payments", bp)

    @bp.get("/invoices/<invoice_id>")
    @require_auth(schemes=("api_key",), scopes=("billing:read",))
    @limiter.limit("7/minute", key_func=by_consumer)
    @cache_response(ttl=45, vary=("Accept-Language",), scope="consumer")
    def invoice(invoice_id: str) -> str:
        """One invoice."""
        return invoice_id

    @bp.post("/invoices/<invoice_id>/pay")
    @edge_policy(max_body_bytes=2048)
    @require_auth(scopes=("billing:write",))
    def pay(invoice_id: str) -> str:
        """Pay an invoice."""
        return invoice_id

    return bp


def table(output: str) -> dict[str, dict[str, str]]:
    """The table's rows by endpoint, each cell cut at its header's column: misaligned cells come out wrong."""
    header, *lines = output.splitlines()
    columns = [(match.group(), match.start()) for match in re.finditer(r"\S+", header)]
    rows = []
    for line in lines:
        cells = {}
        for index, (name, start) in enumerate(columns):
            end = columns[index + 1][1] if index + 1 < len(columns) else None
            cells[name] = line[start:end].strip()
            assert start == 0 or line[start - 2:start] == "  ", f"{name} is not aligned in {line!r}"
        rows.append(cells)
    return {row["ENDPOINT"]: row for row in rows}


def billing_app(make_app: AppFactory) -> FlaskCliRunner:
    app = make_app(blueprints=[billing_blueprint()], UPSTREAMS={"payments": {"targets": [NOWHERE]}},
                   ROUTES=[{"name": "refunds", "path": "/refunds/<path:rest>", "upstream": "payments",
                            "methods": ["GET", "POST"], "retry_any_method": True, "auth": "public",
                            "limits": ["2/second"], "edge": {"max_body_bytes": 100}},
                           {"name": "summary", "path": "/summary/<user_id>", "auth": "public", "aggregate": {
                               "calls": [{"name": "user", "upstream": "users", "path": "/users/{user_id}"},
                                         {"name": "bills", "upstream": "payments", "path": "/bills",
                                          "required": False}]}}])
    return app.test_cli_runner()


# --- gateway routes ---------------------------------------------------------------------------


def test_routes_table_lists_a_new_blueprint_with_its_policies(make_app: AppFactory) -> None:
    runner = billing_app(make_app)
    result = runner.invoke(args=["gateway", "routes"])
    assert result.exit_code == 0, result.output
    rows = table(result.stdout)

    app = runner.app
    assert set(rows) == {rule.endpoint for rule in app.url_map.iter_rules()}  # every route, nothing else
    assert rows["billing.invoice"] == {
        "RULE": "/billing/invoices/<invoice_id>", "METHODS": "GET", "ENDPOINT": "billing.invoice", "KIND": "code",
        "UPSTREAMS": "payments", "AUTH": "api_key billing:read", "LIMITS": "7 per 1 minute by consumer",
        "CACHE": "ttl 45 s, consumer, vary accept-language", "AGGREGATE": "-", "EDGE": "-"}
    pay = rows["billing.pay"]
    assert (pay["METHODS"], pay["AUTH"], pay["CACHE"]) == ("POST", "any scheme billing:write", "-")
    assert pay["EDGE"] == "max_body_bytes"
    refunds = rows["routes.refunds"]
    assert (refunds["KIND"], refunds["METHODS"], refunds["UPSTREAMS"], refunds["AUTH"], refunds["LIMITS"]) == (
        "declared", "GET,POST", "payments (retries any method)", "public", "2 per 1 second by consumer")
    assert (rows["routes.summary"]["KIND"], rows["routes.summary"]["UPSTREAMS"]) == ("aggregate", "users, payments")
    assert rows["routes.summary"]["AGGREGATE"] == "user, bills?"
    assert rows["health.live"]["KIND"] == "gateway" and rows["health.live"]["LIMITS"] == "-"


def test_routes_json_lists_a_new_blueprint_with_its_policies(make_app: AppFactory) -> None:
    runner = billing_app(make_app)
    result = runner.invoke(args=["gateway", "routes", "--json"])
    assert result.exit_code == 0, result.output
    routes = {route["endpoint"]: route for route in json.loads(result.stdout)}

    assert set(routes) == {rule.endpoint for rule in runner.app.url_map.iter_rules()}
    assert routes["billing.invoice"] == {
        "endpoint": "billing.invoice", "rule": "/billing/invoices/<invoice_id>", "methods": ["GET"], "kind": "code",
        "blueprint": "billing", "upstreams": ["payments"],
        "auth": {"public": False, "schemes": ["api_key"], "scopes": ["billing:read"]},
        "limits": [{"rate": "7 per 1 minute", "per": "consumer", "scope": "route"}],
        "cache": {"ttl": 45, "vary": ["accept-language"], "scope": "consumer", "freshness": "route",
                  "stale_while_revalidate": None, "stale_if_error": None, "ignore_client_no_cache": False},
        "aggregate": None, "edge": None, "retry_any_method": False, "websocket": False,
        "summary": "One invoice."}
    assert routes["billing.pay"]["edge"] == {"max_body_bytes": 2048}
    assert routes["routes.refunds"]["retry_any_method"] is True
    assert routes["routes.refunds"]["edge"] == {"max_body_bytes": 100}
    assert [part["name"] for part in routes["routes.summary"]["aggregate"]["parts"]] == ["user", "bills"]


# --- gateway check: each class of problem -------------------------------------------------------

ROUTE = f'[upstreams.pay]\ntargets = ["{NOWHERE}"]\n\n[[routes]]\npath = "/pay"\nupstream = "pay"\n'

# (what is wrong, the file's text, the key the one problem must name)
BAD_FILES: list[tuple[str, str, str]] = [
    ("unknown key", '[log]\nlevle = "INFO"\n', "log.levle"),
    ("unknown section", "[upstream_default]\ntimeout = 1\n", "[upstream_default]"),
    ("wrong type", '[edge]\ntrusted_proxies = "two"\n', "edge.trusted_proxies"),
    ("bad value", '[log]\nformat = "xml"\n', "log.format"),
    ("bad target", '[upstreams.pay]\ntargets = ["ftp://pay.internal"]\n', "upstreams.pay.targets"),
    ("unknown upstream in a route", ROUTE.replace('upstream = "pay"', 'upstream = "pya"') + 'auth = "public"\n',
     "routes[0].upstream"),
    ("duplicate route", ROUTE + 'auth = "public"\n\n[[routes]]\npath = "/pay"\nupstream = "pay"\nauth = "public"\n',
     "routes[1].path"),
    ("bad auth policy", ROUTE + 'auth = "everyone"\n', "routes[0].auth"),
    ("auth scheme not configured", ROUTE + 'auth = { schemes = ["jwt"] }\n', "auth policy of /pay"),
    ("route without auth", ROUTE, "auth policy of /pay"),
    ("bad limit string", ROUTE + 'auth = "public"\nlimits = ["ten per minute"]\n', "routes[0].limits"),
    ("bad cache ttl", ROUTE + 'auth = "public"\ncache = { ttl = 0 }\n', "routes[0].cache.ttl"),
    ("bad edge override", ROUTE + 'auth = "public"\nedge = { max_body_bytes = "big" }\n',
     "routes[0].edge.max_body_bytes"),
    ("bad aggregate reference", '[[routes]]\npath = "/board/<user_id>"\nauth = "public"\n[routes.aggregate]\n'
     'calls = [{ name = "user", upstream = "users", path = "/users/{uid}" }]\n', "routes[0].aggregate.calls[0].path"),
    ("aggregate call to an unknown upstream", '[[routes]]\npath = "/board"\nauth = "public"\n[routes.aggregate]\n'
     'calls = [{ name = "user", upstream = "people", path = "/users" }]\n', "routes[0].aggregate.calls[0].upstream"),
    ("TOML syntax error", "[log\nlevel = 'INFO'\n", "GATEWAY_CONFIG"),
]


@pytest.mark.parametrize(("text", "key"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_check_finds_each_class_of_problem_once(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    report = check_config(config_file=str(path))
    assert [problem.key.removeprefix(f"GATEWAY_CONFIG {path}: ") for problem in report.problems] == [key]
    assert not report.ok


# A section found bad is read again from its defaults; what then fails only because of that is not listed.
CONSEQUENCES: list[tuple[str, str, list[str]]] = [
    ("refused upstream used by a route and a blueprint",
     f'[upstreams.users]\ntargets = ["{NOWHERE}"]\ntimeout = "soon"\n\n[[routes]]\npath = "/u"\n'
     'upstream = "users"\nauth = "public"\n', ["upstreams.users.timeout"]),
    ("bad [upstream_defaults]", "[upstream_defaults]\ntimeout = 0\n", ["upstream_defaults.timeout"]),
    ("upstreams not a table", "upstreams = 3\n", ["upstreams"]),
    ("bad [auth], so no scheme for the routes", f'[auth]\nrealm = 5\n[auth.api_keys.consumers.ci]\n'
     f'key_sha256 = "{"0" * 64}"\n\n{ROUTE}auth = {{ scopes = ["pay"] }}\n', ["auth.realm"]),
    ("bad default auth, so routes without one", f'[route_defaults]\nauth = "everyone"\n\n{ROUTE}',
     ["route_defaults.auth"]),
]


@pytest.mark.parametrize(("text", "keys"), [case[1:] for case in CONSEQUENCES],
                         ids=[case[0] for case in CONSEQUENCES])
def test_check_does_not_list_consequences(tmp_path: Path, text: str, keys: list[str]) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    # Production: its [auth] has no scheme to fall back on; the blueprints' upstreams are the testing ones.
    report = check_config("production", config_file=str(path), blueprints=[])
    assert [problem.key for problem in report.problems] == keys


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    report = check_config(config_file=str(tmp_path / "absent.toml"))
    assert [str(problem) for problem in report.problems] == [
        f"GATEWAY_CONFIG = '{tmp_path / 'absent.toml'}': expected a readable TOML file (No such file or directory)"]
    assert report.env is None


def test_check_reports_a_code_blueprint_without_its_upstream() -> None:
    report = check_config(blueprints=[billing_blueprint()])
    assert [str(problem) for problem in report.problems] == [
        "upstreams.payments = None: expected an [upstreams.payments] table: blueprint 'billing' forwards to it"]


def test_check_reports_a_bad_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_UPSTREAMS__USERS__TIMEOUT", "soon")
    monkeypatch.setenv("GATEWAY_LOGG__LEVEL", "DEBUG")
    report = check_config()
    assert [problem.key for problem in report.problems] == ["GATEWAY_LOGG__LEVEL", "upstreams.users.timeout"]


def test_a_good_configuration_has_no_problem(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(ROUTE + 'auth = "public"\n')
    report = check_config(config_file=str(path))
    assert report.ok and report.env == "testing"
    assert report.rules == len(list(create_app(config_file=str(path)).url_map.iter_rules()))


# --- several problems in one run ----------------------------------------------------------------

MANY = f"""
[log]
levle = "INFO"

[cache]
max_bytes = "big"

[upstreams.pay]
targets = ["{NOWHERE}"]
timeout = -1

[[routes]]
path = "/a"
upstream = "nowhere"
auth = "public"

[[routes]]
path = "/b"
upstream = "users"
auth = "public"
limits = ["5 per fortnight"]

[[routes]]
path = "/c"
upstream = "pay"
auth = "public"

[[routes]]
path = "/d"
upstream = "users"
auth = "public"
cache = {{ ttl = "long" }}
"""
# In the order met; routes[2] forwards to the refused "pay" upstream: a consequence, not listed again.
MANY_KEYS = ["log.levle", "upstreams.pay.timeout", "cache.max_bytes", "routes[0].upstream", "routes[1].limits",
             "routes[3].cache.ttl"]


def test_check_lists_every_problem_with_its_key(tmp_path: Path, make_app: AppFactory) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MANY)
    result = make_app().test_cli_runner().invoke(args=["gateway", "check", "--config", str(path)])

    assert result.exit_code == REFUSED == 3  # as a worker's refused start: gunicorn's WORKER_BOOT_ERROR
    assert result.stdout == ""
    *lines, summary = result.stderr.splitlines()
    assert [line.removeprefix(ERROR_PREFIX).split(" = ")[0] for line in lines] == MANY_KEYS
    assert all(line.startswith(ERROR_PREFIX) for line in lines)
    assert summary == "frontdesk: 6 configuration problems; the gateway would not start"


def test_starting_stops_at_the_first_problem_the_check_lists(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MANY)
    with pytest.raises(ConfigError) as caught:
        create_app(config_file=str(path))
    assert caught.value.key == MANY_KEYS[0]


def test_check_exits_zero_with_one_line_when_fine(tmp_path: Path, make_app: AppFactory) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(ROUTE + 'auth = "public"\n')
    result = make_app().test_cli_runner().invoke(args=["gateway", "check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"frontdesk: configuration ok \(testing, \d+ rules\)\n", result.stdout)
    assert result.stderr == ""


# --- the real commands, as CI and gunicorn run them ----------------------------------------------


def run(command: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "GATEWAY_ENV": "testing",
               "GATEWAY_WORKERS": "1", **env}
    return subprocess.run(command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60)


def test_flask_gateway_check_runs_on_a_configuration_wsgi_cannot_load(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MANY)
    flask = str(Path(sys.executable).parent / "flask")

    # The server's own entry point stops at the first problem, with one line ...
    served = run([sys.executable, "-c", "import wsgi"], tmp_path, GATEWAY_CONFIG=str(path))
    assert served.returncode == REFUSED
    assert served.stderr.splitlines() == [f"{ERROR_PREFIX}log.levle = 'INFO': expected no such key (misspelt?)"]

    # ... while the check, given the same module, lists them all.
    checked = run([flask, "--app", "wsgi", "gateway", "check"], tmp_path, GATEWAY_CONFIG=str(path))
    assert checked.returncode == REFUSED, checked.stderr
    lines = [line for line in checked.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert [line.removeprefix(ERROR_PREFIX).split(" = ")[0] for line in lines] == MANY_KEYS
    assert "Traceback" not in checked.stderr

    # python -m app check (gunicorn's preflight) is the same check.
    module = run([sys.executable, "-m", "app", "check", "--config", str(path)], tmp_path)
    assert (module.returncode, module.stderr) == (REFUSED, checked.stderr)


def test_flask_gateway_commands_on_a_good_configuration(tmp_path: Path) -> None:
    flask = str(Path(sys.executable).parent / "flask")
    path = tmp_path / "gateway.toml"
    path.write_text(ROUTE + 'auth = "public"\n\n[gateway]\nblueprints = ["blueprints.users:bp"]\n')

    checked = run([flask, "--app", "wsgi", "gateway", "check", "--config", str(path)], tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert re.fullmatch(r"frontdesk: configuration ok \(testing, \d+ rules\)\n", checked.stdout)

    listed = run([flask, "--app", "wsgi", "gateway", "routes", "--json"], tmp_path, GATEWAY_CONFIG=str(path))
    assert listed.returncode == 0, listed.stderr
    routes = {route["endpoint"]: route for route in json.loads(listed.stdout)}
    assert routes["routes.r0_pay"]["upstreams"] == ["pay"]
    assert routes["users.item"]["auth"]["scopes"] == ["users:read"]


@pytest.mark.e2e
def test_gunicorn_refuses_to_start_listing_every_problem(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway(MANY, wait=False)
    try:
        code = gateway.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the gateway started despite its problems:\n{gateway.log()}") from None
    assert code != 0
    lines = [line for line in gateway.log().splitlines() if line.startswith(ERROR_PREFIX)]
    assert [line.removeprefix(ERROR_PREFIX).split(" = ")[0] for line in lines] == MANY_KEYS  # from the preflight
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize("argv", [[], ["chek"], ["check", "--conifg", "x.toml"], ["check", "--config"]])
def test_python_m_app_refuses_a_wrong_command_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == "usage: python -m app check [--config FILE]\n"
