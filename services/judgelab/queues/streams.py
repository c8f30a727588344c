"""Stream producers and consumers (the data plane's public face; see ``producer``, ``consumer``)."""

from judgelab.queues.consumer import Consumer, Delivery, Output, StreamStats
from judgelab.queues.groups import GroupInfo, backlog, ensure_group
from judgelab.queues.producer import SAFETY_CAP_FACTOR, Producer, StreamFull

__all__ = [
    "SAFETY_CAP_FACTOR",
    "Consumer",
    "Delivery",
    "GroupInfo",
    "Output",
    "Producer",
    "StreamFull",
    "StreamStats",
    "backlog",
    "ensure_group",
]
