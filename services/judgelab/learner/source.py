"""Scored groups joined with their rollouts, from the arm's two streams.

A :class:`ScoredGroup` carries rewards but not token ids, so the learner reads both
``jl:{exp}:scored:{arm}`` and ``jl:{exp}:rollouts:{arm}`` with its own consumer group
(``learner``) and joins them by group id. Nothing is acked here until the loop says the step that
used it is durable. The consumer name is stable per arm (one learner per arm): on start it first
re-reads its own pending entries (``XREADGROUP ... 0``), in stream order, so a restarted learner
sees the same data in the same order. Reclaiming is left to that re-read (a long claim timeout),
which is repeated whenever the stream is drained: a read whose reply was lost (Redis or the
connection died mid-reply) left its entries in this consumer's pending list, unseen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from judgelab.learner.batch import TrainGroup, join_group, prompt_token_ids
from judgelab.learner.watchdog import DeadLetterWatch, LostGroup
from judgelab.queues.codec import BadMessage
from judgelab.queues.connection import through_outages
from judgelab.queues.consumer import Consumer, Delivery
from judgelab.queues.groups import text
from judgelab.queues.messages import RolloutGroup, ScoredGroup
from judgelab.queues.names import StreamNames

log = logging.getLogger(__name__)

LEARNER_GROUP = "learner"
_DAY_MS = 24 * 3600 * 1000
_ROLLOUT_READS = 100  # rollout batches read while looking for one scored group's rollouts


@dataclass(frozen=True)
class Pending:
    """A joined group and the two deliveries to ack once it is durably trained on (or dropped);
    the seconds its rollouts took to sample and to judge, where the messages say."""

    group: TrainGroup
    scored: Delivery
    rollouts: Delivery
    judge_seconds: float | None
    generate_seconds: float | None = None

    @property
    def group_id(self) -> str:
        return self.group.group_id


class StreamGroupSource:
    """Reads one arm's joined groups for the learner (rank 0 only)."""

    def __init__(
        self,
        client: redis.Redis,
        names: StreamNames,
        arm: str,
        tokenizer: Any,
        consumer: str | None = None,
    ) -> None:
        name = consumer or f"learner-{arm}"
        self.client = client
        self.tokenizer = tokenizer
        options: dict[str, Any] = {"claim_idle_ms": _DAY_MS, "dead_letter": False}
        self.scored = Consumer(client, names.scored(arm), LEARNER_GROUP, name, **options)
        self.rollouts = Consumer(client, names.rollouts(arm), LEARNER_GROUP, name, **options)
        self._cache: dict[str, tuple[RolloutGroup, Delivery]] = {}
        self._held: set[str] = set()  # scored entry ids handed out and not yet acked
        self._backlog: list[Delivery] | None = None  # own pending scored entries, read once
        self._prompt_ids: dict[str, list[int]] = {}
        self.rejected_total = 0
        self.dead_letters = DeadLetterWatch(client, names, arm)

    def read(self, count: int, block_ms: int) -> list[Pending]:
        """Up to ``count`` joined groups: own pending entries first, then new ones."""
        if self._backlog is None:
            self._backlog = self._own_pending(self.scored)
            for delivery in self._own_pending(self.rollouts):
                self._remember_rollouts(delivery)
            log.info("%d scored groups left pending by a previous life", len(self._backlog))
        deliveries, self._backlog = self._backlog[:count], self._backlog[count:]
        if not deliveries:
            deliveries = self.scored.read(count=count, block_ms=block_ms)
        if not deliveries:  # drained; entries whose XREADGROUP reply was lost are ours still
            self._backlog = [d for d in self._own_pending(self.scored) if d.id not in self._held]
        out = []
        for delivery in deliveries:
            if delivery.id in self._held:
                continue
            pending = self._join(delivery)
            if pending is not None:
                self._held.add(delivery.id)
                out.append(pending)
        return out

    def already_done(self, group_id: str) -> bool:
        return self.scored.already_done(group_id)

    def lost_groups(self) -> list[LostGroup]:
        """Groups of the arm dead-lettered since the last call, not yet done by the learner."""
        return [g for g in self.dead_letters.new_entries() if not self.already_done(g.group_id)]

    def ack(self, pending: Pending) -> None:
        """Record the group as done and ack both entries (scored last: it marks the work)."""
        self.rollouts.complete(pending.rollouts, processed_id=pending.group_id)
        self.scored.complete(pending.scored, processed_id=pending.group_id)
        self._held.discard(pending.scored.id)
        self._cache.pop(pending.group_id, None)

    def _join(self, delivery: Delivery) -> Pending | None:
        try:
            scored = ScoredGroup.from_fields(delivery.fields)
        except (BadMessage, ValueError) as exc:
            self.scored.reject(delivery, f"bad scored group: {exc}")
            self.rejected_total += 1
            return None
        found = self._find_rollouts(scored.group_id)
        if found is None and self.rollouts.already_done(scored.group_id):
            # ``ack`` acks the rollouts first, only once the group is durably trained: a learner
            # killed between its two acks left just this one to do.
            log.warning("group %s was trained and half-acked; acking it now", scored.group_id)
            self.scored.complete(delivery, processed_id=scored.group_id)
            return None
        if found is None:
            self.scored.reject(
                delivery, f"no rollout group {scored.group_id} on the rollouts stream"
            )
            self.rejected_total += 1
            return None
        rollouts, rollout_delivery = found
        try:
            group = join_group(scored, rollouts, self._prompt(rollouts))
        except ValueError as exc:
            self.scored.reject(delivery, str(exc))
            self.rollouts.reject(rollout_delivery, str(exc))
            self._cache.pop(scored.group_id, None)
            self.rejected_total += 1
            return None
        return Pending(group, delivery, rollout_delivery, _judge_seconds(scored), rollouts.sample_s)

    def _find_rollouts(self, group_id: str) -> tuple[RolloutGroup, Delivery] | None:
        for _ in range(_ROLLOUT_READS):
            if group_id in self._cache:
                return self._cache[group_id]
            deliveries = self.rollouts.read(count=64)
            if not deliveries:
                break
            for delivery in deliveries:
                self._remember_rollouts(delivery)
        if group_id not in self._cache:  # delivered to us by a read whose reply was lost?
            for delivery in self._own_pending(self.rollouts):
                self._remember_rollouts(delivery)
        return self._cache.get(group_id)

    def _remember_rollouts(self, delivery: Delivery) -> None:
        try:
            group = RolloutGroup.from_fields(delivery.fields)
        except (BadMessage, ValueError) as exc:
            self.rollouts.reject(delivery, f"bad rollout group: {exc}")
            return
        self._cache[group.group_id] = (group, delivery)

    def _prompt(self, rollouts: RolloutGroup) -> list[int]:
        key = rollouts.prompt_id
        if key not in self._prompt_ids:
            self._prompt_ids[key] = prompt_token_ids(self.tokenizer, rollouts.prompt)
        return self._prompt_ids[key]

    def _own_pending(self, consumer: Consumer) -> list[Delivery]:
        """This consumer's unacked entries (a previous life of this learner), oldest first."""
        return through_outages(
            self.client, lambda: self._read_own_pending(consumer), "re-reading pending entries"
        )

    def _read_own_pending(self, consumer: Consumer) -> list[Delivery]:
        out: list[Delivery] = []
        last = "0"
        while True:
            reply: Any = self.client.xreadgroup(
                consumer.group, consumer.consumer, {consumer.stream: last}, count=256
            )
            entries = [(text(i), f) for _s, rows in reply or [] for i, f in rows]
            if not entries:
                return out
            out += [Delivery(i, f or {}, 2) for i, f in entries if f]
            last = entries[-1][0]


def _judge_seconds(scored: ScoredGroup) -> float | None:
    latencies = [j.get("latency_s") for j in scored.judgements]
    values = [float(v) for v in latencies if isinstance(v, int | float)]
    return max(values) if values else None
