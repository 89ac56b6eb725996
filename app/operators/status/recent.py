"""The last 4xx/5xx answers of this worker, for the page: a bounded ring, filled by an after-request hook.

Per worker on purpose: sharing it would put a file write or a network call on the error path of
every request. The counts on the page come from the metrics and cover every worker; this ring
gives examples (with request ids to find in the logs) and says which worker it belongs to.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass

from flask import Response, request

from app.environ import UPSTREAM_ENVIRON
from app.errors import PROBLEM_BASE, PROBLEM_JSON
from app.observability.logs import current_request_id

__all__ = ["ErrorRecord", "RecentErrors"]

# Paths are client-chosen: a bounded length keeps one absurd request from filling the page.
_MAX_PATH = 200


@dataclass(frozen=True)
class ErrorRecord:
    """One answer with a 4xx or 5xx status."""

    at: float  # wall-clock seconds (the page shows UTC)
    status: int
    method: str
    path: str  # without the query: where clients put tokens
    route: str | None
    request_id: str | None
    source: str  # "gateway: upstream-timeout", "upstream users (http://...)", "gateway"


class RecentErrors:
    """A ring of the last ``size`` error answers."""

    def __init__(self, size: int) -> None:
        self._records: deque[ErrorRecord] = deque(maxlen=size)
        self.size = size

    def record(self, response: Response) -> Response:
        """After-request hook: remember the answer when its status is 400 or above."""
        if response.status_code >= 400 and self.size:
            rule = request.url_rule
            self._records.append(ErrorRecord(
                at=time.time(), status=response.status_code, method=request.method[:16],
                path=request.path[:_MAX_PATH], route=rule.rule if rule is not None else None,
                request_id=current_request_id.get(), source=_source(response)))
        return response

    def newest_first(self) -> list[ErrorRecord]:
        """The remembered errors, the latest first."""
        return list(reversed(self._records))


def _source(response: Response) -> str:
    if response.mimetype == PROBLEM_JSON and not response.is_streamed:  # forwarded answers are streamed
        try:
            problem = json.loads(response.get_data())
        except ValueError:
            problem = None
        kind = problem.get("type") if isinstance(problem, dict) else None
        if isinstance(kind, str) and kind.startswith(PROBLEM_BASE):
            return "gateway: " + kind.removeprefix(PROBLEM_BASE)
    upstream = request.environ.get(UPSTREAM_ENVIRON)
    if upstream is not None:
        return f"upstream {upstream[0]} ({upstream[1]})"  # the backend's own answer, forwarded
    return "gateway"
