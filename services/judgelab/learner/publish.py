"""Publishing policy versions for the rollout generator, through the shared
``judgelab.engines.policy_store`` (the layout and Redis key both sides agree on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import redis

from judgelab.engines.policy_store import PublishedPolicy, publish_policy_version
from judgelab.queues.connection import through_outages


class PolicyPublisher(Protocol):
    def publish(self, version: int, model: Any) -> Path | None: ...


class DirectoryPublisher:
    """Writes ``root/v{N}`` atomically and raises the arm's version key in Redis (if given)."""

    def __init__(
        self,
        root: Path,
        client: redis.Redis | None = None,
        key: str | None = None,
        base_model: str = "",
    ) -> None:
        if (client is None) != (key is None):
            raise ValueError("give both client and key, or neither")
        self.root = root
        self.client = client
        self.key = key
        self.base_model = base_model

    def publish(self, version: int, model: Any) -> Path:
        """Write and announce ``version``; waits for Redis if it is down (repeating is safe)."""

        def publish_once() -> PublishedPolicy:
            return publish_policy_version(
                self.root,
                version,
                model,
                redis=self.client,
                key=self.key,
                base_model=self.base_model,
            )

        if self.client is None:
            published = publish_once()
        else:
            published = through_outages(self.client, publish_once, f"publishing v{version}")
        assert published.path is not None
        return published.path
