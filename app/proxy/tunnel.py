"""WebSocket tunnels: the client's opening handshake checked, sent on to the upstream, and its answer passed back.

``check_handshake`` holds the client to RFC 6455 4.1 before anything is sent upstream (its faults are
400s and never count against the upstream). ``shake_hands`` opens a connection of the tunnel's own
to one endpoint (not from the pool: it will never carry another request), sends the handshake with
the forwarded and identity fields every forwarded request gets, and reads the answer with h11, which
knows where a 101's head ends and the WebSocket bytes begin. ``TunnelResponse`` answers the client:
its head through gunicorn's ``start_response`` (which writes ``Connection: upgrade`` and keeps
``Upgrade: websocket`` for a 101), then the relay runs on ``environ["gunicorn.socket"]`` while the
server iterates the body (decision 98).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import h11
from flask import Response
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from app.environ import connection_tokens
from app.errors import HandshakeInvalid, UpstreamTimeout, UpstreamUnreachable, WebSocketRequired
from app.proxy.endpoints import Endpoint
from app.proxy.headers import response_headers
from app.proxy.relay import Relay
from app.proxy.wire import HEAD_LIMIT

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["REFUSAL_LIMIT", "Handshake", "RefusalResponse", "TunnelResponse", "accept_value", "check_handshake",
           "is_upgrade", "shake_hands"]

# RFC 6455 1.3: the accept value is SHA-1 of the key and this GUID, in base64.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# The most of a refusal's body passed back to the client; a longer one is replaced by the gateway's problem.
REFUSAL_LIMIT = 64 * 1024
_READ_SIZE = 64 * 1024


def is_upgrade(environ: WSGIEnvironment) -> bool:
    """Whether the request asks to switch to WebSocket (``Upgrade: websocket``)."""
    return "websocket" in connection_tokens(environ.get("HTTP_UPGRADE"))


def check_handshake(environ: WSGIEnvironment) -> str:
    """The client's Sec-WebSocket-Key, once its handshake is shown to be a valid RFC 6455 one.

    Raises WebSocketRequired (426) for a plain request or another protocol version, and
    HandshakeInvalid (400) for the rest.
    """
    if not is_upgrade(environ):
        raise WebSocketRequired("This route only takes WebSocket connections (a GET with Upgrade: websocket).")
    if environ.get("REQUEST_METHOD") != "GET":
        raise HandshakeInvalid("A WebSocket handshake is a GET request.")
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        raise HandshakeInvalid("A WebSocket handshake is made over HTTP/1.1.")
    if "upgrade" not in connection_tokens(environ.get("HTTP_CONNECTION")):
        raise HandshakeInvalid("A WebSocket handshake says Connection: Upgrade.")
    if environ.get("CONTENT_LENGTH") not in (None, "", "0") or "HTTP_TRANSFER_ENCODING" in environ:
        raise HandshakeInvalid("A WebSocket handshake has no body.")
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION")
    if version is None:
        raise HandshakeInvalid("A WebSocket handshake says Sec-WebSocket-Version: 13.")
    if version.strip() != "13":
        raise WebSocketRequired("Only WebSocket version 13 is spoken here (Sec-WebSocket-Version: 13).")
    key = str(environ.get("HTTP_SEC_WEBSOCKET_KEY", "")).strip()
    try:
        nonce = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        nonce = b""
    if len(nonce) != 16:
        raise HandshakeInvalid("Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 4.1).")
    return key


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept an upstream must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


@dataclass
class Handshake:
    """The upstream's answer to the handshake: a 101 with its socket, or a refusal with its body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    sock: socket.socket | None = None  # the tunnel's upstream connection, on a 101
    pending: bytes = field(default=b"", repr=False)  # bytes the upstream sent right after its 101


def shake_hands(endpoint: Endpoint, url: str, headers: dict[str, str], key: str, *, connect_timeout: float,
                read_timeout: float) -> Handshake:
    """Send the handshake to ``endpoint`` on a new connection and read its answer.

    The caller bounds the whole exchange (the upstream's ``timeout``). Raises UpstreamUnreachable or
    UpstreamTimeout for the upstream's faults; the connection is closed on every path but a 101's.
    """
    sock = _connect(endpoint, connect_timeout)
    try:
        sock.settimeout(read_timeout)
        answer = _exchange(sock, url, headers)
    except socket.timeout:
        sock.close()
        raise UpstreamTimeout("The upstream did not answer the WebSocket handshake in time.", "timeout") from None
    except (OSError, h11.ProtocolError):
        sock.close()
        raise UpstreamUnreachable("The upstream closed the connection or answered the handshake with invalid "
                                  "HTTP.") from None
    except BaseException:
        sock.close()
        raise
    if answer.sock is None:
        sock.close()
        return answer
    fields = {name.lower(): value for name, value in answer.headers}
    if fields.get("sec-websocket-accept") != accept_value(key) or "websocket" not in connection_tokens(
            fields.get("upgrade")):
        sock.close()
        raise UpstreamUnreachable("The upstream switched protocols without accepting this WebSocket handshake.")
    sock.settimeout(None)  # from now on the relay's own limits apply
    return answer


def _connect(endpoint: Endpoint, timeout: float) -> socket.socket:
    target = endpoint.target
    try:
        sock = socket.create_connection((endpoint.address, target.port), timeout=timeout)
    except socket.timeout:
        raise UpstreamTimeout("The upstream did not accept the connection in time.", "connect") from None
    except OSError:
        raise UpstreamUnreachable("The upstream refused the connection.", "connect") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if target.scheme == "https":
        try:
            # The CA bundle requests verifies forwarded calls against (certifi's), so both agree on a target.
            context = ssl.create_default_context(cafile=DEFAULT_CA_BUNDLE_PATH)
            sock = context.wrap_socket(sock, server_hostname=target.host)
        except OSError:  # ssl.SSLError included
            sock.close()
            raise UpstreamUnreachable("The upstream's TLS handshake failed.", "connect") from None
    return sock


def _exchange(sock: socket.socket, url: str, headers: dict[str, str]) -> Handshake:
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
    request = h11.Request(method="GET", target=url, headers=list(headers.items()))
    sock.sendall(connection.send(request) + (connection.send(h11.EndOfMessage()) or b""))
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(sock.recv(_READ_SIZE))
        elif isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            pending, _ = connection.trailing_data
            return Handshake(101, _fields(event), sock=sock, pending=bytes(pending))
        elif isinstance(event, h11.Response):
            return Handshake(event.status_code, _fields(event), _refusal_body(connection, sock))
        elif not isinstance(event, h11.InformationalResponse):  # a 100 or 103 is read past
            raise UpstreamUnreachable("The upstream closed the connection during the WebSocket handshake.")


def _refusal_body(connection: h11.Connection, sock: socket.socket) -> bytes:
    body = bytearray()
    while len(body) <= REFUSAL_LIMIT:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(sock.recv(_READ_SIZE))
        elif isinstance(event, h11.Data):
            body += event.data
        else:
            return bytes(body)  # EndOfMessage (or the connection closed after a close-delimited body)
    raise _TooLong


class _TooLong(UpstreamUnreachable):
    def __init__(self) -> None:
        super().__init__("The upstream refused the WebSocket handshake with a body longer than the gateway passes on.")


def _fields(event: h11.Response | h11.InformationalResponse) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers.raw_items()]


def _end_to_end(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's fields without hop-by-hop ones (and its framing, which the gateway sets), plus Via."""
    connection = next((value for name, value in fields if name.lower() == "connection"), None)
    return response_headers([(name, value) for name, value in fields if name.lower() != "content-length"],
                            connection)


class RefusalResponse(Response):
    """The upstream's refusal of a handshake (its status, end-to-end fields and body) for the client."""

    default_mimetype = None  # the upstream's own Content-Type, or none

    def __init__(self, answer: Handshake) -> None:
        super().__init__(answer.body, status=answer.status, headers=_end_to_end(answer.headers))


class TunnelResponse(Response):
    """The upstream's 101 to the client, then the relay, run while the server iterates the (empty) body."""

    default_mimetype = None

    def __init__(self, answer: Handshake, relay: Relay) -> None:
        super().__init__(status=101, headers=[*_end_to_end(answer.headers), ("Connection", "Upgrade"),
                                              ("Upgrade", "websocket")])
        self.relay = relay

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Send the 101's head; the body is the relay (closing it, even unread, closes the tunnel)."""
        try:
            start_response(self.status, list(self.headers.items()))
        except BaseException:
            self.relay.close()
            raise
        return _TunnelBody(self.relay)


class _TunnelBody:
    __slots__ = ("relay",)

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def __iter__(self) -> Iterator[bytes]:
        yield b""  # the server writes the head on the first write, before any WebSocket byte
        self.relay.run()

    def close(self) -> None:
        self.relay.close()
