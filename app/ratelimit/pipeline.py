"""Implicit pipelining: the limit scripts of every request waiting at once go to Redis in one round trip.

Under load a worker has many requests at their limit check together. Each one sending its own
EVALSHA pays a system call out, a wake-up of Redis and a wait back; on the benchmark's machine that
was most of the limit's cost (docs/performance-tuning.md). Here a request queues its script call and
waits; one greenlet per worker sends whatever is queued as one pipeline (non-transactional: each
script is still atomic on its own) and hands each request its own answer. A lone request makes a
batch of one, so nothing waits for a batch to fill: the batching comes only from requests that were
already waiting. Envoy's ratelimit service calls the same idea implicit pipelining.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gevent
from gevent.event import AsyncResult
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

__all__ = ["ScriptPipeline"]

# Commands per round trip at most: a bound on the bytes one write and one read carry, and on how
# long the first of a batch waits for the answer of the last.
MAX_BATCH = 128

_Call = tuple[Script, Sequence[str], Sequence[Any], AsyncResult]


class ScriptPipeline:
    """Runs Lua scripts for many greenlets of one worker in shared pipelines (one worker: no lock)."""

    def __init__(self, client: Redis, max_batch: int = MAX_BATCH) -> None:
        self.client = client
        self.max_batch = max_batch
        self._pending: list[_Call] = []
        self._sender: gevent.Greenlet[Any, Any] | None = None

    def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's answer, as ``script(keys, args)`` would give it; its errors raised here.

        The caller's own deadline (a gevent timeout) bounds the wait; a request that gives up
        leaves its answer to nobody, and the others of its batch are not disturbed.
        """
        waiter = AsyncResult()
        self._pending.append((script, keys, args, waiter))
        if self._sender is None:
            # Sent from a greenlet of its own, never from a caller's: a caller's deadline firing
            # mid-read would break the connection under every request of the batch.
            self._sender = gevent.spawn(self._send_pending)
        return waiter.get()

    def _send_pending(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:self.max_batch]
                del self._pending[:self.max_batch]
                self._send(batch)
        finally:
            self._sender = None  # nothing yields after the loop's last check: no call is stranded

    def _send(self, batch: list[_Call]) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                # Errors of one command come back in its place (raise_on_error=False), so one bad
                # script call fails its own request only.
                answers = pipe.execute(raise_on_error=False)
        except Exception as error:  # the connection failed: every request of the batch sees it
            for *_, waiter in batch:
                waiter.set_exception(error)
            return
        for (script, keys, args, waiter), answer in zip(batch, answers):
            if isinstance(answer, NoScriptError):
                # Redis lost its script cache (a restart, SCRIPT FLUSH): the plain call loads it again.
                try:
                    answer = script(keys, args)
                except Exception as error:
                    waiter.set_exception(error)
                    continue
            if isinstance(answer, Exception):
                waiter.set_exception(answer)
            else:
                waiter.set(answer)
