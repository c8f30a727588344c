"""One stream of requests → one stream of results in completion order.

A reader thread takes requests off the stream as they arrive and starts each at once (so the
samples of later requests batch with earlier ones); one waiter thread per request moves its
results to a shared queue, which the response stream drains. The first error (a bad request,
a passed deadline) ends the stream with that error; a client that hangs up cancels everything
still waiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from judgelab.annotator.annotating import Annotating, AnnotationResult, cancelled

Request = TypeVar("Request")

_END = object()  # the reader saw the end of the request stream
_DRAINED = object()  # a request's waiter is done


class Completions(Generic[Request]):
    """Iterate for results; :meth:`cancel` stops everything (safe to call more than once)."""

    def __init__(
        self, requests: Iterator[Request], start: Callable[[Request], Annotating]
    ) -> None:
        self._requests = requests
        self._start = start
        self._out: queue.Queue[object] = queue.Queue()
        self._handles: list[Annotating] = []
        self._lock = threading.Lock()
        self._cancelled = False
        self._reader = threading.Thread(target=self._read, name="annotate-stream", daemon=True)
        self._reader.start()

    def __iter__(self) -> Iterator[AnnotationResult]:
        started = 0
        drained = 0
        ended = False
        try:
            while not (ended and drained == started):
                item = self._out.get()
                if isinstance(item, BaseException):
                    raise item
                if item is _END:
                    ended = True
                elif item is _DRAINED:
                    drained += 1
                elif isinstance(item, Annotating):
                    started += 1
                elif isinstance(item, AnnotationResult):
                    yield item
        finally:
            self.cancel()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            handles = list(self._handles)
        for handle in handles:
            handle.cancel()
        self._out.put(cancelled("the stream was cancelled"))

    def _read(self) -> None:
        try:
            for request in self._requests:
                handle = self._start(request)
                with self._lock:
                    if self._cancelled:
                        handle.cancel()
                        return
                    self._handles.append(handle)
                self._out.put(handle)
                threading.Thread(
                    target=self._drain, args=(handle,), name="annotate-wait", daemon=True
                ).start()
        except Exception as error:  # noqa: BLE001 - handed to the response stream
            self._out.put(error)
            return
        self._out.put(_END)

    def _drain(self, handle: Annotating) -> None:
        try:
            for _index, result in handle.as_completed():
                self._out.put(result)
        except Exception as error:  # noqa: BLE001 - handed to the response stream
            self._out.put(error)
            return
        finally:
            with self._lock:
                self._handles.remove(handle)
        self._out.put(_DRAINED)


def merge_completions(
    requests: Iterator[Request], start: Callable[[Request], Annotating]
) -> Completions[Request]:
    return Completions(requests, start)
