"""The Redis-streams data plane: stream names, typed messages, producers and consumers."""

from judgelab.queues.codec import BadMessage
from judgelab.queues.connection import RedisUnavailable, connect
from judgelab.queues.consumer import Consumer, Delivery, StreamStats
from judgelab.queues.messages import (
    GoldRequest,
    GoldResult,
    Rollout,
    RolloutGroup,
    SampleMessage,
    ScoredGroup,
)
from judgelab.queues.names import StreamNames
from judgelab.queues.producer import Producer, StreamFull

__all__ = [
    "BadMessage",
    "Consumer",
    "Delivery",
    "GoldRequest",
    "GoldResult",
    "Producer",
    "RedisUnavailable",
    "Rollout",
    "RolloutGroup",
    "SampleMessage",
    "ScoredGroup",
    "StreamFull",
    "StreamNames",
    "StreamStats",
    "connect",
]
