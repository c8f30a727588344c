"""A private asyncio event loop on a daemon thread, for sync APIs over async code.

A sync method hands its coroutine to :class:`BackgroundLoop` and blocks on the result, so it
works whether or not the caller already runs an event loop of its own (that loop is blocked
meanwhile). :func:`close_client_on` closes an async HTTP client that belongs to some other loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from judgelab.engines.base import EngineError

T = TypeVar("T")


class BackgroundLoop:
    """A private event loop on a daemon thread where the sync API runs its coroutines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            raise EngineError("sync engine call made from the engine's own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self._start()).result()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="openai-engine-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def close_client_on(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> None:
    """Close a client that belongs to another event loop, as far as that loop allows."""
    if loop.is_closed():
        return  # its connections died with the loop
    if loop.is_running():
        asyncio.run_coroutine_threadsafe(client.aclose(), loop)
    else:
        loop.run_until_complete(client.aclose())
