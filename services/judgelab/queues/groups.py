"""Consumer-group bookkeeping shared by producers and consumers: creation, lag and backlog.

A stream keeps acknowledged entries (until the safety cap trims them), so its length is not the
work left. The work left for a group is its *backlog*: entries not yet delivered (``lag``) plus
entries delivered but not acknowledged (``pending``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import ResponseError


@dataclass(frozen=True)
class GroupInfo:
    """One row of XINFO GROUPS. ``lag`` is None where Redis cannot tell (before 7.0, after XDEL)."""

    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    lag: int | None


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def ensure_group(client: redis.Redis, stream: str, group: str) -> bool:
    """Create ``group`` reading ``stream`` from the start (and the stream); False if it exists."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if str(exc).startswith("BUSYGROUP"):
            return False
        raise
    return True


def is_nogroup(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


def group_infos(client: redis.Redis, stream: str) -> list[GroupInfo]:
    """The groups reading ``stream``; empty when the stream does not exist."""
    try:
        rows: list[dict[str, Any]] = client.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return []
        raise
    return [_info(row) for row in rows]


def _info(row: dict[str, Any]) -> GroupInfo:
    lag = row.get("lag")
    return GroupInfo(
        name=text(row["name"]),
        consumers=int(row["consumers"]),
        pending=int(row["pending"]),
        last_delivered_id=text(row["last-delivered-id"]),
        lag=None if lag is None else int(lag),
    )


def group_lag(client: redis.Redis, stream: str, info: GroupInfo, limit: int) -> int:
    """Entries not yet delivered to the group (counted up to ``limit`` where Redis cannot tell)."""
    if info.lag is not None:
        return info.lag
    after = client.xrange(stream, min=f"({info.last_delivered_id}", max="+", count=limit)
    return len(after or [])


def backlog(client: redis.Redis, stream: str, limit: int) -> int:
    """The slowest group's undelivered plus unacknowledged entries; the length if no group."""
    infos = group_infos(client, stream)
    if not infos:
        return int(client.xlen(stream))
    return max(info.pending + group_lag(client, stream, info, limit) for info in infos)
