"""Python clients for the judgelab gRPC API (``judgelab.v1``): typed, with retries and deadlines.

    from judgelab.client import ChannelConfig, JudgePoolClient, Sample

    config = ChannelConfig("judge-pool.example:443", ca_file=Path("ca.pem"), token="...")
    with JudgePoolClient(config) as pool:
        for score in pool.score_all("proxy-small", samples, chunk_size=64):
            print(score.sample_id, score.expected_score)

Async: :class:`AsyncJudgePoolClient`, :class:`AsyncGoldAnnotatorClient`. Failures raise
:class:`ApiError` (status code, message, per-field details, retry hint).
"""

from judgelab.client.aio import AsyncGoldAnnotatorClient, AsyncJudgePoolClient
from judgelab.client.channel import ChannelConfig
from judgelab.client.errors import ApiError, ErrorInfo
from judgelab.client.retry import NO_RETRY, RetryPolicy
from judgelab.client.sync import GoldAnnotatorClient, JudgePoolClient
from judgelab.client.types import (
    Annotation,
    JudgeInfo,
    Message,
    OrderResult,
    Pair,
    PairwiseResult,
    Sample,
    ScoreResult,
)

__all__ = [
    "NO_RETRY",
    "Annotation",
    "ApiError",
    "AsyncGoldAnnotatorClient",
    "AsyncJudgePoolClient",
    "ChannelConfig",
    "ErrorInfo",
    "GoldAnnotatorClient",
    "JudgeInfo",
    "JudgePoolClient",
    "Message",
    "OrderResult",
    "Pair",
    "PairwiseResult",
    "RetryPolicy",
    "Sample",
    "ScoreResult",
]
