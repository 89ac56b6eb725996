"""Safe defaults shared by every environment; each key is documented where it is set."""

from __future__ import annotations

from typing import Any


class Base:
    """Settings every environment starts from.

    Each upper-case attribute is one section of the configuration. A TOML file named by
    ``GATEWAY_CONFIG`` is merged over these (tables key by key, arrays replaced), then
    ``GATEWAY_<SECTION>__<KEY>`` environment variables, then ``create_app(**overrides)``.
    """

    # Flask's own switch; the testing class turns it on.
    TESTING = False

    # [log]: how the gateway writes its log lines.
    LOG: dict[str, Any] = {
        "level": "INFO",  # DEBUG, INFO, WARNING, ERROR
        "format": "json",  # json (one object per line) or human
    }

    # [edge]: what the outermost WSGI layer believes about the network in front of it.
    EDGE: dict[str, Any] = {
        # Proxy hops in front of the gateway whose X-Forwarded-For/-Proto/-Host are believed.
        # 0 trusts none: the TCP peer is the client, and forged headers change nothing.
        "trusted_proxies": 0,
    }

    # [metrics]: Prometheus metrics and the endpoint that serves them (docs/observability.md).
    METRICS: dict[str, Any] = {
        "enabled": True,  # record metrics; false makes every recording a no-op and removes the endpoint
        "path": "/metrics",  # where scrapes are answered; a gateway endpoint, never forwarded or rate limited
        # Bearer token every scrape must send (set it from GATEWAY_METRICS__TOKEN, never in a committed file).
        # None: no token asked for, so the address check below is the only gate.
        "token": None,
        # Client networks a scrape may come from ([] = any address). Loopback only by default:
        # an unconfigured gateway never shows its metrics to the internet.
        "allow_from": ["127.0.0.1/32", "::1/128"],
    }

    # [tracing]: W3C Trace Context is always propagated; OpenTelemetry export is optional.
    TRACING: dict[str, Any] = {
        # Export spans over OTLP/HTTP when the otel extra is installed (pip install .[otel]).
        "otel": False,
        "service_name": "frontdesk",  # the service.name resource attribute of exported spans
        # OTLP/HTTP traces URL; None: the exporter's default or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
        "otlp_endpoint": None,
    }

    # [upstream_defaults]: applied under every [upstreams.NAME] table.
    UPSTREAM_DEFAULTS: dict[str, Any] = {
        "connect_timeout": 0.5,  # seconds to establish a TCP (and TLS) connection
        "read_timeout": 5.0,  # seconds between two reads from the upstream socket
        "timeout": 10.0,  # seconds for the whole exchange, until the upstream's response head
        "max_in_flight": 500,  # concurrent calls per worker; beyond it the gateway answers 503 at once
        "pool_size": 100,  # idle keep-alive connections kept per target per worker
        "preserve_host": False,  # send the client's Host upstream instead of the target's
    }

    # [upstreams.NAME]: the services behind the gateway, by name. None by default.
    UPSTREAMS: dict[str, Any] = {}

    # [route_defaults]: applied under every [[routes]] entry.
    ROUTE_DEFAULTS: dict[str, Any] = {
        # Only reads unless a route declares more: a write method is never exposed by accident.
        "methods": ["GET"],
    }

    # [[routes]]: declared routes, compiled into the built-in "routes" blueprint. None by default.
    ROUTES: list[dict[str, Any]] = []
