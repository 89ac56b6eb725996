"""WebSocket tunnels without gunicorn: the handshake rules, the settings, the relay, and every slot given back."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from flask import Blueprint, Flask, Response
from openapi_spec_validator import validate

from app import Upstream, upstreams
from app.auth import public
from app.caching.policy import decide
from app.proxy import OPEN, TunnelFigures, TunnelLimits
from app.proxy.relay import Relay
from app.proxy.tunnel import accept_value, check_handshake
from app.errors import HandshakeInvalid, WebSocketRequired
from app.operators.cli import format_routes
from app.operators.openapi.document import build_document
from app.operators.inventory import inventory
from app.routes import read_routes
from app.config import ConfigError
from tests.conftest import AppFactory
from tests.fakes import free_port
from tests.fakes.wsecho import WsUpstream

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_CONNECTION": "keep-alive, Upgrade",
             "HTTP_UPGRADE": "websocket", "HTTP_SEC_WEBSOCKET_VERSION": "13", "HTTP_SEC_WEBSOCKET_KEY": KEY}
ROUTE = "/ws/<path:rest>"


# --- the client's handshake -------------------------------------------------------------------


def test_a_valid_handshake_gives_its_key() -> None:
    assert check_handshake(dict(HANDSHAKE)) == KEY
    assert accept_value(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3's example


@pytest.mark.parametrize(("change", "error"), [
    ({"HTTP_UPGRADE": None}, WebSocketRequired),
    ({"REQUEST_METHOD": "POST"}, HandshakeInvalid),
    ({"SERVER_PROTOCOL": "HTTP/1.0"}, HandshakeInvalid),
    ({"HTTP_CONNECTION": "keep-alive"}, HandshakeInvalid),
    ({"CONTENT_LENGTH": "5"}, HandshakeInvalid),
    ({"HTTP_SEC_WEBSOCKET_VERSION": None}, HandshakeInvalid),
    ({"HTTP_SEC_WEBSOCKET_VERSION": "8"}, WebSocketRequired),
    ({"HTTP_SEC_WEBSOCKET_KEY": None}, HandshakeInvalid),
    ({"HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="}, HandshakeInvalid),  # 5 bytes
    ({"HTTP_SEC_WEBSOCKET_KEY": "not base64 at all!!!!!=="}, HandshakeInvalid),
    ({"HTTP_SEC_WEBSOCKET_KEY": f"{KEY},{KEY}"}, HandshakeInvalid),  # sent twice, joined by the server
])
def test_invalid_handshakes_are_refused(change: dict[str, str | None], error: type[Exception]) -> None:
    environ = {**HANDSHAKE, **change}
    with pytest.raises(error):
        check_handshake({name: value for name, value in environ.items() if value is not None})


# --- settings ----------------------------------------------------------------------------------


def routes(**entry: Any) -> Any:
    config = {"ROUTES": [{"path": ROUTE, "upstream": "ws", **entry}], "ROUTE_DEFAULTS": {"methods": ["GET"]}}
    return read_routes(config, ("ws",))


def test_websocket_true_takes_the_default_limits() -> None:
    [route] = routes(websocket=True)
    assert route.websocket == TunnelLimits()
    [route] = routes(websocket={"max_tunnels": 5, "idle_timeout": 2.5, "max_lifetime": 60, "drain_grace": 1})
    assert route.websocket == TunnelLimits(5, 2.5, 60.0, 1.0)
    assert routes(websocket=False)[0].websocket is None


@pytest.mark.parametrize(("entry", "message"), [
    ({"websocket": "yes"}, "routes[0].websocket = 'yes': expected true, or a table of max_tunnels"),
    ({"websocket": {"max_tunnels": 0}}, "routes[0].websocket.max_tunnels = 0: expected a whole number >= 1"),
    ({"websocket": {"idle_timeout": -1}}, "routes[0].websocket.idle_timeout = -1: expected a number of seconds"),
    ({"websocket": {"idle": 5}}, "routes[0].websocket.idle = 5: expected no such key"),
    ({"websocket": True, "methods": ["GET", "POST"]}, "routes[0].methods = ['GET', 'POST']: expected [\"GET\"]"),
    ({"websocket": True, "cache": {"ttl": 5}}, "routes[0].cache = {'ttl': 5}: expected no such key on a websocket"),
    ({"websocket": True, "retry_any_method": True}, "routes[0].retry_any_method = True: expected no such key"),
])
def test_bad_websocket_settings_name_the_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        routes(**entry)
    assert str(caught.value).startswith(message)


def test_a_bad_websocket_setting_stops_the_start(make_app: AppFactory) -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]\.websocket\.max_lifetime"):
        make_app(UPSTREAMS={"ws": {"targets": ["http://127.0.0.1:9"]}},
                 ROUTES=[{"path": "/ws", "upstream": "ws", "auth": "public", "websocket": {"max_lifetime": "long"}}])


def test_an_event_stream_is_never_stored_by_the_cache() -> None:
    decision = decide(200, [("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "max-age=60")],
                      60, credentials=False, consumer_scoped=False)
    assert decision.reason == "event-stream"
    assert decide(200, [("Content-Type", "text/plain")], 60, credentials=False, consumer_scoped=False).reason is None


# --- the relay ---------------------------------------------------------------------------------


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(client's end, gateway's client side, gateway's upstream side, upstream's end)."""
    client, gateway_client = socket.socketpair()
    gateway_upstream, upstream = socket.socketpair()
    yield client, gateway_client, gateway_upstream, upstream
    for each in (client, gateway_client, gateway_upstream, upstream):
        each.close()


def relay(sockets: tuple[socket.socket, ...], limits: TunnelLimits, drain: Any = None,
          pending: bytes = b"") -> tuple[Relay, list[int]]:
    closes: list[int] = []
    made = Relay(sockets[1], sockets[2], pending, limits, TunnelFigures(ROUTE), drain,
                 lambda: closes.append(1))
    return made, closes


def test_bytes_pass_both_ways_and_a_close_is_passed_on_as_a_half_close(sockets: Any) -> None:
    client, _, _, upstream = sockets
    tunnel, closes = relay(sockets, TunnelLimits(), pending=b"first")
    running = gevent.spawn(tunnel.run)
    assert client.recv(100) == b"first"
    client.sendall(b"up")
    assert upstream.recv(100) == b"up"
    upstream.sendall(b"down")
    assert client.recv(100) == b"down"
    client.shutdown(socket.SHUT_WR)
    assert upstream.recv(100) == b""  # the client's end, passed on
    upstream.sendall(b"last words")
    assert client.recv(100) == b"last words"  # the other way still flows
    upstream.close()
    running.join(timeout=5)
    assert running.dead and closes == [1]
    assert tunnel.figures.reason == "client"
    assert (tunnel.figures.bytes_up, tunnel.figures.bytes_down) == (2, len(b"first" + b"down" + b"last words"))


@pytest.mark.parametrize(("limits", "reason"), [
    (TunnelLimits(idle_timeout=0.2, max_lifetime=0), "idle"),
    (TunnelLimits(idle_timeout=0, max_lifetime=0.3), "lifetime"),
])
def test_a_limit_ends_the_tunnel_and_closes_both_sides(sockets: Any, limits: TunnelLimits, reason: str) -> None:
    client, _, _, upstream = sockets
    tunnel, closes = relay(sockets, limits)
    running = gevent.spawn(tunnel.run)
    running.join(timeout=5)
    assert running.dead and tunnel.figures.reason == reason and closes == [1]
    assert client.recv(100) == b"" and upstream.recv(100) == b""


def test_traffic_keeps_an_idle_timeout_away(sockets: Any) -> None:
    client, _, _, upstream = sockets
    tunnel, _ = relay(sockets, TunnelLimits(idle_timeout=0.3, max_lifetime=0))
    running = gevent.spawn(tunnel.run)
    for _ in range(6):  # 0.6 s in all, never 0.3 s quiet
        gevent.sleep(0.1)
        client.sendall(b"heartbeat")
        assert upstream.recv(100) == b"heartbeat"
    assert not running.dead
    running.join(timeout=5)
    assert tunnel.figures.reason == "idle"


def test_the_drain_closes_the_tunnel_after_its_grace(sockets: Any) -> None:
    client, _, _, upstream = sockets
    drain = gevent.event.Event()
    tunnel, closes = relay(sockets, TunnelLimits(drain_grace=0.3), drain)
    running = gevent.spawn(tunnel.run)
    gevent.sleep(0.05)
    drain.set()
    client.sendall(b"during the grace")
    assert upstream.recv(100) == b"during the grace"
    assert not running.dead
    running.join(timeout=5)
    assert running.dead and tunnel.figures.reason == "drain" and closes == [1]


# --- every slot given back ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[WsUpstream]:
    with WsUpstream() as running:
        yield running


def ws_app(make_app: AppFactory, url: str, **upstream: Any) -> Flask:
    return make_app(UPSTREAMS={"ws": {"targets": [url], "timeout": 5, **upstream}},
                    ROUTES=[{"path": ROUTE, "upstream": "ws", "auth": "public", "upstream_path": "/{rest}",
                             "websocket": {"max_tunnels": 3}}])


def open_count(app: Flask) -> dict[str, int]:
    runtime = app.extensions["frontdesk.upstreams"]
    return dict(runtime.tunnels)


def in_flight(app: Flask) -> tuple[int, int]:
    state = upstreams.state("ws", app)
    return state.in_flight, state.endpoints[0].in_flight


def handshake_environ(client_socket: socket.socket) -> dict[str, Any]:
    return {name: value for name, value in HANDSHAKE.items() if name != "REQUEST_METHOD"} | {
        "gunicorn.socket": client_socket}


def test_an_unreachable_upstream_gives_every_slot_back(make_app: AppFactory, sockets: Any) -> None:
    app = ws_app(make_app, f"http://127.0.0.1:{free_port()}")
    response = app.test_client().get("/ws/echo", environ_base=handshake_environ(sockets[1]))
    assert response.status_code == 502
    assert open_count(app) == {ROUTE: 0} and in_flight(app) == (0, 0)


def test_a_tunnel_closed_without_being_relayed_gives_its_slot_back(make_app: AppFactory, sockets: Any,
                                                                   ws_upstream: WsUpstream) -> None:
    app = ws_app(make_app, ws_upstream.url)
    response = app.test_client().get("/ws/echo", environ_base=handshake_environ(sockets[1]), buffered=False)
    assert response.status_code == 101
    assert open_count(app) == {ROUTE: 1} and in_flight(app) == (0, 0)
    response.close()  # the server never iterated the body (its head failed, say): the tunnel still closes
    assert open_count(app) == {ROUTE: 0}


def test_a_handshake_killed_midway_gives_back_its_slots_and_its_breaker_probe(make_app: AppFactory,
                                                                              sockets: Any) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    try:
        app = ws_app(make_app, f"http://127.0.0.1:{silent.getsockname()[1]}",
                     breaker={"failure_ratio": 0.5, "min_requests": 1, "window": 10, "open_for": 1})
        breaker = upstreams.state("ws", app).endpoints[0].breaker
        assert breaker is not None
        breaker.state, breaker.opened_at = OPEN, -1e9  # open long enough: the next call is the half-open probe
        request = gevent.spawn(app.test_client().get, "/ws/echo", environ_base=handshake_environ(sockets[1]))
        gevent.sleep(0.3)
        assert open_count(app) == {ROUTE: 1} and in_flight(app) == (1, 1) and breaker.probing
        request.kill()  # the worker stopping, say: no verdict on the upstream
        assert open_count(app) == {ROUTE: 0} and in_flight(app) == (0, 0)
        assert not breaker.probing  # the probe may go out again
    finally:
        silent.close()


def test_a_full_route_answers_503_and_takes_nothing(make_app: AppFactory, sockets: Any,
                                                    ws_upstream: WsUpstream) -> None:
    app = ws_app(make_app, ws_upstream.url)
    client = app.test_client()
    opened = [client.get("/ws/echo", environ_base=handshake_environ(sockets[1]), buffered=False) for _ in range(3)]
    assert [response.status_code for response in opened] == [101] * 3
    refused = client.get("/ws/echo", environ_base=handshake_environ(sockets[1]))
    assert refused.status_code == 503 and refused.json is not None and refused.json["type"].endswith("tunnels-full")
    assert open_count(app) == {ROUTE: 3}
    for response in opened:
        response.close()
    assert open_count(app) == {ROUTE: 0}


def test_a_plain_request_gets_426_and_one_without_a_client_socket_501(make_app: AppFactory) -> None:
    app = ws_app(make_app, "http://127.0.0.1:9")
    plain = app.test_client().get("/ws/echo")
    assert plain.status_code == 426 and plain.headers["Upgrade"] == "websocket"
    no_socket = app.test_client().get("/ws/echo", environ_base=handshake_environ(None))  # type: ignore[arg-type]
    assert no_socket.status_code == 501
    assert open_count(app) == {}


def chat_blueprint() -> Blueprint:
    """A code route family with one WebSocket route, as docs/websocket.md shows it."""
    bp = Blueprint("chat", __name__)
    chat = Upstream("ws", bp)

    @bp.route("/chat/<room>", websocket=True)
    @public
    def join(room: str) -> Response:
        """A room's WebSocket."""
        return chat.tunnel(f"/{room}", limits=TunnelLimits(max_tunnels=1))

    return bp


def test_a_code_route_tunnels_with_its_own_limits(make_app: AppFactory, sockets: Any,
                                                  ws_upstream: WsUpstream) -> None:
    app = make_app(UPSTREAMS={"ws": {"targets": [ws_upstream.url]}}, blueprints=(chat_blueprint(),))
    client = app.test_client()
    opened = client.get("/chat/echo", environ_base=handshake_environ(sockets[1]), buffered=False)
    assert opened.status_code == 101 and opened.headers["Upgrade"] == "websocket"
    assert client.get("/chat/echo", environ_base=handshake_environ(sockets[1])).status_code == 503
    assert client.get("/chat/echo").status_code == 426
    opened.close()
    assert open_count(app) == {"/chat/<room>": 0}


def test_the_inventory_names_websocket_routes(make_app: AppFactory) -> None:
    app = ws_app(make_app, "http://127.0.0.1:9")
    routes = {route.rule: route for route in inventory(app)}
    assert routes[ROUTE].websocket and routes[ROUTE].as_dict()["websocket"] is True
    assert not routes["/livez"].websocket
    assert "ws (websocket)" in format_routes([routes[ROUTE]])


def test_an_https_target_whose_certificate_is_not_trusted_is_502_and_frees_its_slots(
        make_app: AppFactory, sockets: Any, tmp_path: Any) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_tls() -> None:
        connection, _ = listener.accept()
        try:
            with contextlib.suppress(OSError):
                context.wrap_socket(connection, server_side=True).close()  # the gateway refuses the certificate
        finally:
            connection.close()

    server = gevent.spawn(serve_tls)
    try:
        app = ws_app(make_app, f"https://127.0.0.1:{listener.getsockname()[1]}")
        response = app.test_client().get("/ws/echo", environ_base=handshake_environ(sockets[1]))
        assert response.status_code == 502 and response.json is not None
        assert response.json["detail"] == "The upstream's TLS handshake failed."
        assert open_count(app) == {ROUTE: 0} and in_flight(app) == (0, 0)
    finally:
        server.join(timeout=5)
        server.kill()
        listener.close()


def test_the_openapi_document_describes_a_websocket_route(make_app: AppFactory) -> None:
    app = ws_app(make_app, "http://127.0.0.1:9")
    with app.app_context():
        document = build_document(app)
    validate(document)
    operation = document["paths"]["/ws/{rest}"]["get"]
    assert "101" in operation["responses"] and "200" not in operation["responses"]
    assert operation["responses"]["426"] == {"$ref": "#/components/responses/UpgradeRequired"}
    assert operation["x-frontdesk"]["websocket"] is True
