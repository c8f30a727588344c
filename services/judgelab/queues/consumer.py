"""Reading a stream as one consumer of a consumer group.

Delivery is at least once: an entry stays pending until ``complete``/``skip``/``reject`` acks
it, and an entry idle for ``claim_idle_ms`` (its worker crashed, or is slower than that) is
taken over by the next ``read`` of any consumer in the group. ``claim_idle_ms`` must therefore
exceed the longest time one entry takes to process (or call ``touch`` while working on it).
Results are exactly once per processed id: ``complete`` writes the outputs, records the id and
acks in one MULTI/EXEC, and skips the outputs when the id was already recorded.

Redis does not roll a transaction back when one command fails inside EXEC, so ``complete``
first checks that every output key is a stream (or absent); the one runtime failure left, OOM,
makes Redis refuse the whole EXEC.

While Redis is down (restarting, failing over) every public call waits for it, logging a clear
error, for up to ``outage_timeout_s`` (None: as long as it takes; see ``through_outages``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.client import Pipeline
from redis.exceptions import ResponseError, WatchError
from redis.typing import EncodableT, FieldT, StreamIdT

from judgelab.queues.codec import FieldsIn
from judgelab.queues.connection import through_outages
from judgelab.queues.groups import GroupInfo, ensure_group, group_infos, group_lag, is_nogroup, text
from judgelab.queues.names import dead_letter as dead_letter_stream
from judgelab.queues.names import processed_set
from judgelab.queues.producer import plain_fields

_log = logging.getLogger(__name__)
DEFAULT_OUTPUT_CAP = 1_000_000
_LAG_SCAN_LIMIT = 100_000
_WATCH_ATTEMPTS = 100

Output = tuple[str, FieldsIn]
T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """One entry handed to this consumer; ``deliveries`` counts this delivery (1 = first)."""

    id: str
    fields: dict[bytes, bytes]
    deliveries: int


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of one group on one stream, and this consumer's counters."""

    stream: str
    group: str
    length: int
    lag: int
    pending: int
    dead_letter_length: int
    reclaimed_total: int
    dead_lettered_total: int
    completed_total: int
    skipped_total: int
    lost_total: int


class Consumer:
    """One named consumer of ``group`` on ``stream`` (the group is created if missing).

    Counters: ``reclaimed_total`` (entries taken over from idle consumers), ``dead_lettered_total``,
    ``completed_total``, ``skipped_total`` (acked without outputs: already processed) and
    ``lost_total`` (pending entries whose data was already trimmed from the stream).
    With ``dead_letter=False`` nothing is dead-lettered automatically: entries are redelivered
    however often they failed, and ``Delivery.deliveries`` lets the caller decide.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = 5,
        dead_letter: bool = True,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        outage_timeout_s: float | None = None,
    ) -> None:
        if claim_idle_ms < 0 or max_deliveries < 1 or output_cap < 1:
            raise ValueError("need claim_idle_ms >= 0, max_deliveries >= 1 and output_cap >= 1")
        if not consumer.strip():
            raise ValueError("consumer name must not be empty")
        self.redis = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.dead_letter = dead_letter
        self.output_cap = output_cap
        self.outage_timeout_s = outage_timeout_s
        self.done_key = processed_set(stream, group)
        self.dead_stream = dead_letter_stream(stream)
        self.reclaimed_total = 0
        self.dead_lettered_total = 0
        self.completed_total = 0
        self.skipped_total = 0
        self.lost_total = 0
        self._cursor = "0-0"
        self._checked_outputs: set[str] = set()
        ensure_group(client, stream, group)

    def read(self, count: int = 10, block_ms: int = 0) -> list[Delivery]:
        """Up to ``count`` entries: idle ones reclaimed first, then new ones.

        ``block_ms`` > 0 waits that long for new entries when none were reclaimed; 0 returns at
        once (unlike Redis' BLOCK 0). It must stay below the client's socket timeout.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._check_block(block_ms)
        return self._through("read", lambda: self._read(count, block_ms))

    def read_new(self, count: int = 10) -> list[Delivery]:
        """Up to ``count`` entries never delivered to the group, without waiting or reclaiming
        (a reclaim soon after ``read`` could hand back what that read just reclaimed)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        return self._through("read", lambda: self._on_group(self._read_new, count, 0))

    def _read(self, count: int, block_ms: int) -> list[Delivery]:
        reclaimed = self._on_group(self._reclaim, count)
        if len(reclaimed) >= count:
            return reclaimed
        wait_ms = 0 if reclaimed else block_ms
        return reclaimed + self._on_group(self._read_new, count - len(reclaimed), wait_ms)

    def complete(
        self,
        delivery: Delivery,
        outputs: Sequence[Output] = (),
        processed_id: str | None = None,
    ) -> bool:
        """XADD ``outputs``, record ``processed_id`` and ack ``delivery``, all or nothing.

        Returns False (and only acks) when ``processed_id`` was already recorded.
        """
        prepared = [(stream, plain_fields(fields)) for stream, fields in outputs]
        return self._through("complete", lambda: self._complete(delivery, prepared, processed_id))

    def _complete(
        self,
        delivery: Delivery,
        prepared: list[tuple[str, dict[FieldT, EncodableT]]],
        processed_id: str | None,
    ) -> bool:
        self._check_outputs([stream for stream, _ in prepared])
        if processed_id is None:
            pipe = self.redis.pipeline(transaction=True)
            self._queue_completion(pipe, delivery, prepared, None)
            pipe.execute()
            self.completed_total += 1
            return True
        done = self._complete_once(delivery, prepared, processed_id)
        if done:
            self.skipped_total += 1
        else:
            self.completed_total += 1
        return not done

    def already_done(self, processed_id: str) -> bool:
        done = self._through("a lookup", lambda: self.redis.sismember(self.done_key, processed_id))
        return bool(done)

    def skip(self, delivery: Delivery) -> None:
        """Ack without outputs (a redelivered entry whose id is already done)."""
        self._through("an ack", lambda: self.redis.xack(self.stream, self.group, delivery.id))
        self.skipped_total += 1

    def reject(self, delivery: Delivery, reason: str) -> None:
        """Move ``delivery`` to the dead-letter stream with ``reason`` (e.g. a BadMessage)."""
        self._through(
            "dead-lettering",
            lambda: self._move_to_dead(delivery.id, delivery.fields, delivery.deliveries, reason),
        )

    def touch(self, deliveries: Sequence[Delivery]) -> int:
        """Reset the idle time of entries still being worked on; how many are still ours."""
        if not deliveries:
            return 0
        ids: list[StreamIdT] = [d.id for d in deliveries]
        claimed = self._through(
            "a touch",
            lambda: self.redis.xclaim(self.stream, self.group, self.consumer, 0, ids, justid=True),
        )
        return len(claimed)

    def lag(self) -> int:
        """Entries added to the stream and not yet delivered to the group."""
        return group_lag(self.redis, self.stream, self._group_info(), _LAG_SCAN_LIMIT)

    def pending_count(self) -> int:
        """Entries delivered to the group (any consumer) and not yet acknowledged."""
        return self._group_info().pending

    def stats(self) -> StreamStats:
        info = self._group_info()
        return StreamStats(
            stream=self.stream,
            group=self.group,
            length=int(self.redis.xlen(self.stream)),
            lag=group_lag(self.redis, self.stream, info, _LAG_SCAN_LIMIT),
            pending=info.pending,
            dead_letter_length=int(self.redis.xlen(self.dead_stream)),
            reclaimed_total=self.reclaimed_total,
            dead_lettered_total=self.dead_lettered_total,
            completed_total=self.completed_total,
            skipped_total=self.skipped_total,
            lost_total=self.lost_total,
        )

    def _through(self, what: str, call: Callable[[], T]) -> T:
        return through_outages(
            self.redis, call, f"{what} on {self.stream}", timeout_s=self.outage_timeout_s
        )

    def _group_info(self) -> GroupInfo:
        for _ in range(2):
            for info in group_infos(self.redis, self.stream):
                if info.name == self.group:
                    return info
            ensure_group(self.redis, self.stream, self.group)
        raise RuntimeError(f"group {self.group} on {self.stream} disappears as it is created")

    def _check_block(self, block_ms: int) -> None:
        if block_ms < 0:
            raise ValueError(f"block_ms must be >= 0, got {block_ms}")
        timeout = self.redis.get_connection_kwargs().get("socket_timeout")
        if block_ms and timeout is not None and block_ms / 1000 >= float(timeout):
            raise ValueError(
                f"block_ms {block_ms} must be below the client's socket timeout ({timeout} s)"
            )

    def _on_group(self, read: Callable[..., list[Delivery]], *args: int) -> list[Delivery]:
        try:
            return read(*args)
        except ResponseError as exc:
            if not is_nogroup(exc):
                raise
        _log.error(
            "group %s on %s vanished (Redis lost data?); recreating", self.group, self.stream
        )
        ensure_group(self.redis, self.stream, self.group)
        self._cursor = "0-0"
        return read(*args)

    def _reclaim(self, count: int) -> list[Delivery]:
        reply = self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            self.claim_idle_ms,
            start_id=self._cursor,
            count=count,
        )
        self._cursor = text(reply[0])
        entries = [(text(i), fields) for i, fields in reply[1] if fields is not None]
        lost = len(reply[1]) - len(entries) + (len(reply[2]) if len(reply) > 2 else 0)
        if lost:
            self.lost_total += lost
            _log.error("%d pending entries of %s were trimmed before processing", lost, self.stream)
        if not entries:
            return []
        self.reclaimed_total += len(entries)
        counts = self._delivery_counts([entry_id for entry_id, _ in entries])
        return [
            delivery
            for entry_id, fields in entries
            if entry_id in counts
            and (delivery := self._screen(entry_id, fields, counts[entry_id])) is not None
        ]

    def _screen(self, entry_id: str, fields: dict[bytes, bytes], count: int) -> Delivery | None:
        if self.dead_letter and count > self.max_deliveries:
            reason = f"delivered {count} times (max_deliveries {self.max_deliveries})"
            self._move_to_dead(entry_id, fields, count, reason)
            return None
        return Delivery(entry_id, fields, count)

    def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        rows: list[list[dict[str, Any]]] = pipe.execute()
        return {
            text(row["message_id"]): int(row["times_delivered"]) for found in rows for row in found
        }

    def _read_new(self, count: int, block_ms: int) -> list[Delivery]:
        reply: Any = self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms or None
        )
        return [
            Delivery(text(entry_id), fields or {}, 1)
            for _stream, entries in reply or []
            for entry_id, fields in entries
        ]

    def _move_to_dead(
        self, entry_id: str, fields: dict[bytes, bytes], deliveries: int, reason: str
    ) -> None:
        dead = plain_fields(fields)
        dead.update(
            {
                "dead_reason": reason,
                "dead_stream": self.stream,
                "dead_id": entry_id,
                "dead_group": self.group,
                "dead_consumer": self.consumer,
                "dead_deliveries": deliveries,
            }
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.dead_stream, dead, maxlen=self.output_cap, approximate=True)
        pipe.xack(self.stream, self.group, entry_id)
        pipe.execute()
        self.dead_lettered_total += 1
        _log.warning("dead-lettered %s %s: %s", self.stream, entry_id, reason)

    def _check_outputs(self, streams: list[str]) -> None:
        """Refuse outputs XADD would fail on inside EXEC, where Redis cannot roll the ack back."""
        unchecked = [s for s in dict.fromkeys(streams) if s not in self._checked_outputs]
        if not unchecked:
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream in unchecked:
            pipe.type(stream)
        for stream, kind in zip(unchecked, pipe.execute(), strict=True):
            if text(kind) not in ("stream", "none"):
                raise ValueError(f"output key {stream} holds a {text(kind)}, not a stream")
            self._checked_outputs.add(stream)

    def _complete_once(
        self,
        delivery: Delivery,
        outputs: list[tuple[str, dict[FieldT, EncodableT]]],
        processed_id: str,
    ) -> bool:
        """One MULTI/EXEC, retried while another consumer changes the processed set meanwhile."""
        with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(_WATCH_ATTEMPTS):
                try:
                    pipe.watch(self.done_key)  # type: ignore[no-untyped-call]
                    done = bool(pipe.sismember(self.done_key, processed_id))
                    pipe.multi()
                    if done:
                        self._queue_completion(pipe, delivery, [], None)
                    else:
                        self._queue_completion(pipe, delivery, outputs, processed_id)
                    pipe.execute()
                    return done
                except WatchError:
                    continue
        raise RuntimeError(f"{self.done_key} kept changing; gave up completing {delivery.id}")

    def _queue_completion(
        self,
        pipe: Pipeline,
        delivery: Delivery,
        outputs: list[tuple[str, dict[FieldT, EncodableT]]],
        processed_id: str | None,
    ) -> None:
        for stream, fields in outputs:
            pipe.xadd(stream, fields, maxlen=self.output_cap, approximate=True)
        if processed_id is not None:
            pipe.sadd(self.done_key, processed_id)
        pipe.xack(self.stream, self.group, delivery.id)
