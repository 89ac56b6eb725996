"""Who may see the status page: the client's network (the metrics endpoint's own check), then HTTP Basic."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from werkzeug.exceptions import Forbidden, TooManyRequests, Unauthorized

from app.admin import BasicLogin, admin_authorized, basic_credentials
from app.errors import GatewayError, PROBLEM_BASE
from app.operators.metrics_endpoint import address_allowed
from app.operators.status.settings import StatusSettings

__all__ = ["Gate", "StatusBusy", "StatusForbidden", "StatusUnauthorized"]


# A password hash costs ~0.14 s of CPU (werkzeug's scrypt default) and blocks the worker's event
# loop meanwhile: each worker verifies at most this many unknown credentials per second, and
# remembers the ones that passed, so a person reloading the page pays once.
_CHECKS_PER_SECOND = 2.0
_CHECK_BURST = 4.0
_REMEMBERED = 16


class StatusForbidden(GatewayError, Forbidden):
    """The request came from an address outside [status] allow_from."""

    problem = PROBLEM_BASE + "status-forbidden"


class StatusUnauthorized(GatewayError, Unauthorized):
    """No credentials, or wrong ones, while [status] asks for them."""

    problem = PROBLEM_BASE + "status-unauthorized"
    extra_headers = (("WWW-Authenticate", 'Basic realm="frontdesk status", charset="UTF-8"'),)


class StatusBusy(GatewayError, TooManyRequests):
    """More unknown credentials than this worker verifies per second."""

    problem = PROBLEM_BASE + "status-busy"
    extra_headers = (("Retry-After", "1"),)


class Gate:
    """The page's access check in one worker: address, then credentials (with a budget for hashing)."""

    def __init__(self, settings: StatusSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._tokens = _CHECK_BURST
        self._filled_at = clock()
        # Digests of Authorization headers that passed: never the header itself.
        self._passed: dict[bytes, None] = {}

    def check(self, address: str | None, authorization: str | None) -> None:
        """Raise unless the client may see the page."""
        settings = self.settings
        if settings.allow_from and not address_allowed(settings.allow_from, address):
            raise StatusForbidden("The status page is not shown to this address.")
        if settings.password_hash is None:
            return
        digest = hashlib.sha256((authorization or "").encode("utf-8", "surrogateescape")).digest()
        if digest in self._passed:
            return
        if basic_credentials(authorization) is None:
            raise StatusUnauthorized("The status page asks for HTTP Basic credentials.")
        if not self._take_token():
            raise StatusBusy("Too many password checks right now; retry in a second.")
        if not admin_authorized(authorization, BasicLogin(settings.username or "", settings.password_hash)):
            raise StatusUnauthorized("The status page asks for HTTP Basic credentials.")
        if len(self._passed) >= _REMEMBERED:
            self._passed.pop(next(iter(self._passed)))
        self._passed[digest] = None

    def _take_token(self) -> bool:
        now = self.clock()
        self._tokens = min(_CHECK_BURST, self._tokens + (now - self._filled_at) * _CHECKS_PER_SECOND)
        self._filled_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
