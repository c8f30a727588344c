"""Adding work to a stream, with back-pressure instead of unbounded growth.

A stream is full when its backlog (see ``groups``) reaches ``max_length``: ``add`` then waits
up to ``wait_s`` for consumers to catch up and raises :class:`StreamFull`. Unconsumed work is
never trimmed. XADD's ``MAXLEN ~ cap`` (``cap`` = ``SAFETY_CAP_FACTOR`` x ``max_length``) only
drops old *acknowledged* entries: the backlog is at most ``max_length``, so ``cap`` leaves room
for it many times over. The check and the add are two commands: with N producers racing on one
stream the backlog can pass ``max_length`` by at most N - 1 entries. While Redis is down, ``add``
waits for it (``outage_timeout_s``; see ``through_outages``): an add whose reply was lost can be
repeated, so consumers dedupe by message id.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

import redis
from redis.typing import EncodableT, FieldT

from judgelab.queues.codec import FieldsIn
from judgelab.queues.connection import through_outages
from judgelab.queues.groups import backlog, text

SAFETY_CAP_FACTOR = 10
_POLL_FIRST_S = 0.01
_POLL_MAX_S = 0.5


class StreamFull(Exception):
    """The stream's consumers are ``max_length`` entries behind; try again later."""

    def __init__(self, stream: str, backlog: int, max_length: int, waited_s: float) -> None:
        super().__init__(
            f"stream {stream} has {backlog} unconsumed entries (max_length {max_length}) "
            f"after waiting {waited_s:.2f} s"
        )
        self.stream = stream
        self.backlog = backlog
        self.max_length = max_length


def poll_delay_s(attempt: int) -> float:
    """Jittered, doubling pause between back-pressure checks (10 ms up to 0.5 s)."""
    return min(_POLL_MAX_S, _POLL_FIRST_S * 2.0**attempt) * random.uniform(0.5, 1.0)


class Producer:
    """Adds entries to streams whose backlog is bounded by ``max_length``."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_length: int = 100_000,
        outage_timeout_s: float | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.redis = client
        self.max_length = max_length
        self.cap = max_length * SAFETY_CAP_FACTOR
        self.outage_timeout_s = outage_timeout_s
        self.added_total = 0
        self.full_total = 0

    def room(self, stream: str) -> int:
        """How many more entries ``stream`` takes before it is full (0 when full)."""
        length = int(self.redis.xlen(stream))
        if length < self.max_length:
            return self.max_length - length
        return max(0, self.max_length - backlog(self.redis, stream, limit=self.max_length))

    def wait_for_room(self, stream: str, wait_s: float = 0.0) -> None:
        """Return once ``stream`` has room; raise :class:`StreamFull` after ``wait_s`` seconds."""
        start = time.monotonic()
        attempt = 0
        while self.room(stream) == 0:
            waited = time.monotonic() - start
            if waited >= wait_s:
                self.full_total += 1
                left = backlog(self.redis, stream, limit=self.max_length)
                raise StreamFull(stream, left, self.max_length, waited)
            time.sleep(min(wait_s - waited, poll_delay_s(attempt)))
            attempt += 1

    def add(self, stream: str, fields: FieldsIn, *, wait_s: float = 0.0) -> str:
        """XADD ``fields`` to ``stream`` once it has room; the new entry's id."""
        plain = plain_fields(fields)

        def add_once() -> str:
            self.wait_for_room(stream, wait_s)
            return text(self.redis.xadd(stream, plain, maxlen=self.cap, approximate=True))

        entry_id = through_outages(
            self.redis, add_once, f"an add to {stream}", self.outage_timeout_s
        )
        self.added_total += 1
        return entry_id

    def add_all(
        self, stream: str, entries: Sequence[FieldsIn], *, wait_s: float = 0.0
    ) -> list[str]:
        """XADD every entry in one MULTI/EXEC: all or none, and a consumer blocked on ``stream``
        wakes once, to all of them (one batch for a batching consumer); their ids, in order.

        The room check is for one entry: a call can pass ``max_length`` by ``len(entries) - 1``.
        """
        plain = [plain_fields(fields) for fields in entries]
        if not plain:
            return []

        def add_once() -> list[str]:
            self.wait_for_room(stream, wait_s)
            with self.redis.pipeline(transaction=True) as pipe:
                for fields in plain:
                    pipe.xadd(stream, fields, maxlen=self.cap, approximate=True)
                return [text(entry_id) for entry_id in pipe.execute()]

        entry_ids = through_outages(
            self.redis, add_once, f"{len(plain)} adds to {stream}", self.outage_timeout_s
        )
        self.added_total += len(entry_ids)
        return entry_ids


def plain_fields(fields: FieldsIn) -> dict[FieldT, EncodableT]:
    """``fields`` as the dict XADD takes; ValueError when empty."""
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError("a stream entry needs at least one field")
    out: dict[FieldT, EncodableT] = {}
    for key, value in fields.items():
        out[key] = value
    return out
