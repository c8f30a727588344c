"""judgelab: controlled studies of LLM judges in RL post-training on non-verifiable tasks."""

__version__ = "0.1.0"
