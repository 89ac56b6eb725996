"""The gateway's Flask class: Flask, with ``ensure_sync``'s answer remembered per function.

``Flask.ensure_sync`` is public API ("Override this method to change how the app runs async views",
Flask 2.0+): this is an override, not a use of Flask's internals, so it is not in app/internals.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

__all__ = ["Gateway"]

# The functions Flask hands to ensure_sync are the app's hooks, views and error handlers: a few dozen.
# The bound keeps a caller that makes a new function per request from growing the memo.
_MEMO_LIMIT = 1024


class Gateway(Flask):
    """Flask, with ``ensure_sync`` answered from a memo: it runs for every hook and the view of every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's answer (the function, or a wrapper for ``async def``), asked once per function.

        Flask asks ``inspect.iscoroutinefunction`` of every hook on every request: 28,000 instructions
        of a request with the gateway's nine hooks (callgrind; docs/performance-tuning.md, sixth round; decision 93).
        """
        try:
            return self._sync[func]
        except KeyError:
            answer = super().ensure_sync(func)
            if len(self._sync) < _MEMO_LIMIT:
                self._sync[func] = answer
            return answer
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)
