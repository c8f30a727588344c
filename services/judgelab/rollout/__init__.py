"""The rollout generator: G completions per prompt from the current policy version (see main)."""
