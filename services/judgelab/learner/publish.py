"""Publishing policy versions for the rollout generator, through the shared
``judgelab.engines.policy_store`` (the layout and Redis key both sides agree on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import redis

from judgelab.engines.policy_store import publish_policy_version


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
        published = publish_policy_version(
            self.root,
            version,
            model,
            redis=self.client,
            key=self.key,
            base_model=self.base_model,
        )
        assert published.path is not None
        return published.path
