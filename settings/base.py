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

    # [gateway]: which route families written in code are served (docs/routes.md: Add a route family). Declared
    # [[routes]] are always served; a code blueprint only when named here, as "module:attribute".
    GATEWAY: dict[str, Any] = {
        "blueprints": [],  # e.g. ["blueprints.users:bp"]; none by default: the samples are never served by accident
    }

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
        # The protections below (docs/edge.md); a route's `edge = {...}` overrides all but the last four.
        "max_body_bytes": 10 * 1024 * 1024,  # larger bodies get 413 (Content-Length at once, chunked as read); 0: none
        "allow_ips": [],  # client networks (CIDR, IPv4/IPv6) that may call; [] = every address
        "deny_ips": [],  # client networks refused with 403 before anything else runs (routes add to it)
        "deny_user_agents": [],  # regular expressions (re.search) on User-Agent refused with 403 (routes add to it)
        # [edge.cors]: {} turns the gateway's CORS off; keys: allow_origins, allow_methods, allow_headers,
        # expose_headers, allow_credentials, max_age (docs/edge.md).
        "cors": {},
        "security_headers": True,  # X-Content-Type-Options, Referrer-Policy, HSTS (https only) on every answer
        "referrer_policy": "no-referrer",  # unless the upstream sets its own
        "hsts_max_age": 31536000,  # seconds of Strict-Transport-Security over https; 0: never sent
        "strip_upstream_headers": ["Server", "X-Powered-By"],  # removed from every answer: no version leaks
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

    # [status]: the operators' status page (docs/status-page.md): routes and policies, upstream targets,
    # traffic per route, recent errors. Its own access control, like [metrics]; never forwarded, cached or limited.
    STATUS: dict[str, Any] = {
        "enabled": True,  # serve the page; false removes the endpoint and its recorder of recent errors
        "path": "/status",  # where the page answers (no variables)
        # Client networks the page is shown to. Loopback only by default; [] = any address, which is
        # refused unless the credentials below are set (the page is never public by accident).
        "allow_from": ["127.0.0.1/32", "::1/128"],
        # HTTP Basic credentials asked for on top of the address check; both or neither.
        "username": None,
        # A werkzeug scrypt or pbkdf2 hash of the password (python -m app.operators.status hash-password), best from
        # GATEWAY_STATUS__PASSWORD_HASH; never the password itself.
        "password_hash": None,
        "refresh": 10,  # seconds between the page's own reloads (an HTML meta refresh, no JavaScript); 0: never
        "recent_errors": 50,  # 4xx/5xx answers each worker remembers for the page (0: none)
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
        # Send the client's Authorization header upstream; off, services rely on the identity headers.
        "forward_authorization": False,
    }

    # [upstreams.NAME]: the services behind the gateway, by name. None by default. Besides the
    # keys above, each (or [upstream_defaults]) may set balance, hash_on, health, eject, retries,
    # breaker, critical and resolve_interval (docs/resilience.md); none of them is on unless set.
    UPSTREAMS: dict[str, Any] = {}

    # [route_defaults]: applied under every [[routes]] entry.
    ROUTE_DEFAULTS: dict[str, Any] = {
        # Only reads unless a route declares more: a write method is never exposed by accident.
        "methods": ["GET"],
    }

    # [auth]: who may call which route (docs/auth.md). [auth.jwt] and [auth.api_keys] turn the schemes on;
    # neither is configured by default, so only public routes can be served until one is. The defaults of
    # [auth.jwt]'s optional keys are in app/auth/settings.py and docs/auth.md; the one that costs memory is
    # verified_cache_size = 4096: successful verifications each worker remembers by the token's SHA-256
    # (about 1.5 KB each for a 300-byte token; 0 verifies every request in full).
    AUTH: dict[str, Any] = {
        "realm": "frontdesk",  # the realm named in WWW-Authenticate challenges
        "header_prefix": "X-Auth-",  # identity headers sent upstream; client-sent ones with it are dropped
    }

    # [ratelimit]: limits and quotas (docs/ratelimit.md). Counted per worker unless storage_uri is shared.
    RATELIMIT: dict[str, Any] = {
        "storage_uri": "memory://",  # redis://, rediss://, redis+sentinel://, redis+cluster:// to share counts
        "strategy": "sliding-window-counter",  # or fixed-window, moving-window
        "default": [],  # app-wide limits per client address, checked before anything else; none by default
        "on_storage_error": "open",  # storage unreachable: "open" lets requests through, "closed" answers 503
        "storage_timeout": 0.2,  # seconds a request waits for the storage, at most
        "retry_interval": 1.0,  # seconds between attempts to reach a storage found unreachable
        "headers": "ietf",  # ietf (RateLimit-Policy, RateLimit), legacy (X-RateLimit-*), both, none
        "exact": False,  # true: refuse to start with memory:// and more than one worker
        "key_prefix": "frontdesk",  # counters' namespace in a shared storage
        "plans": {},  # quotas by consumer plan: free = ["60/minute", "1000/day"]
        "plan_claim": "plan",  # the JWT claim naming a caller's plan (an API key's consumer has its own)
        "default_plan": None,  # the plan of callers whose credential names none (or an unknown one)
    }

    # [cache]: response caching (docs/caching.md). Routes opt in with cache = { ttl, vary, scope }.
    CACHE: dict[str, Any] = {
        "max_bytes": 64 * 1024 * 1024,  # per worker: the whole local tier, bodies and headers, bounded by bytes
        "max_item_bytes": 1024 * 1024,  # larger answers stream through unstored
        "shared_uri": "",  # redis://host:port/db: a tier shared by every worker and instance; "" for none
        "shared_timeout": 0.1,  # seconds to connect to or hear from Redis before the tier counts as down
        "shared_retry": 5.0,  # seconds the shared tier is left alone after a failure
        "local_ttl": 2.0,  # with a shared tier: seconds a worker keeps its own copy (bounds other instances' purges)
        # RFC 9213 fields obeyed instead of Cache-Control (and Expires), the first present wins; list a field
        # of your own first (e.g. "Frontdesk-Cache-Control") to address this gateway alone; [] for Cache-Control
        "targeted_fields": ["CDN-Cache-Control"],
        "stale_keep": 600.0,  # seconds an entry with a validator or a stale window is kept past its freshness
        "wait_timeout": 15.0,  # seconds concurrent misses wait for the one upstream call before a 504
        "max_waiters": 1000,  # waiters per key; beyond that a request goes upstream itself
        "surrogate_header": "Surrogate-Key",  # upstream response header with space-separated purge tags
        "purge_token": "",  # the admin endpoints' bearer secret, from GATEWAY_CACHE__PURGE_TOKEN; "" disables it
        "admin_path": "/_frontdesk/cache",  # POST <admin_path>/purge, GET <admin_path>/stats (with purge_token)
        "journal": "",  # file shared by one instance's workers for purges; "" = a temp file per gunicorn master
    }

    # [openapi]: the OpenAPI 3.1 document generated from the routes (docs/openapi.md).
    OPENAPI: dict[str, Any] = {
        "enabled": True,  # serve it (public, GET) at path; false removes the endpoint (the CLI still exports it)
        "path": "/openapi.json",  # where it is served; a gateway endpoint, never forwarded
        "title": "Frontdesk",  # info.title
        "version": None,  # info.version; None: the installed frontdesk package's version
        "description": "",  # info.description (Markdown)
    }

    # [[routes]]: declared routes, compiled into the built-in "routes" blueprint. None by default.
    ROUTES: list[dict[str, Any]] = []
