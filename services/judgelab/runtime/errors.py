"""What the local runtime reports to its user: each error says what happened and what to do."""

from __future__ import annotations

EXIT_SETUP = 2  # the run could not start (missing binary, refused spec, not a run directory)


class RuntimeSetupError(Exception):
    """The run could not start or continue; the message is for the user, no traceback needed."""

    exit_code = EXIT_SETUP


class RedisServerMissing(RuntimeSetupError):
    """No redis-server binary and no REDIS_URL."""


class NotARunDir(RuntimeSetupError):
    """A directory without the run state the runtime writes."""


class SpecChangeRefused(RuntimeSetupError):
    """The experiment changed in a field that a started stage already read."""


class ServiceFailed(RuntimeError):
    """A child process did not start, did not become healthy, or exited while needed."""

    def __init__(self, name: str, problem: str, log_tail: str, log_path: str) -> None:
        tail = log_tail.rstrip() or "(empty)"
        super().__init__(f"{name} {problem} (log: {log_path}); log tail:\n{tail}")
        self.name = name
        self.problem = problem
        self.log_tail = log_tail


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP reached the runtime: stop everything and exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class UnitFailed(RuntimeError):
    """A unit run in a child process failed; the message says why, the log tail is kept."""

    def __init__(self, reason: str, log_tail: str) -> None:
        super().__init__(reason)
        self.log_tail = log_tail
