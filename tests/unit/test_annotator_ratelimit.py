"""Token bucket maths on a fake clock (no real sleeping)."""

from __future__ import annotations

import threading

import pytest

from judgelab.annotator.ratelimit import RateLimiter
from judgelab.serving.errors import DeadlineExceeded


class FakeClock:
    """``sleep`` advances time instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(per_minute: int | None, burst: int | None = None) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(per_minute, burst, clock=clock, sleep=clock.sleep), clock


def test_unlimited_never_waits():
    rl, clock = limiter(None)
    assert all(rl.acquire(100) == 0.0 for _ in range(100))
    assert clock.slept == []


def test_burst_is_free_then_requests_are_paced_at_the_rate():
    rl, clock = limiter(60, burst=3)  # one per second
    assert [rl.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.acquire() == pytest.approx(1.0)
    assert rl.acquire() == pytest.approx(1.0)
    assert clock.now == pytest.approx(1002.0)


def test_tokens_refill_over_time_up_to_the_burst():
    rl, clock = limiter(120, burst=4)  # two per second
    rl.acquire(4)
    clock.now += 1.0  # two tokens back
    assert rl.acquire(2) == 0.0
    assert rl.acquire(1) == pytest.approx(0.5)
    clock.now += 3600  # a long idle time refills only to the burst
    assert rl.acquire(4) == 0.0
    assert rl.acquire(1) == pytest.approx(0.5)


def test_default_burst_is_one_second_of_tokens():
    assert RateLimiter(600).burst == 10
    assert RateLimiter(30).burst == 1


def test_a_batch_larger_than_the_burst_waits_for_all_its_tokens():
    rl, _ = limiter(60, burst=2)
    assert rl.acquire(5) == pytest.approx(3.0)
    # The bucket is empty now, not in credit: the next one waits a full interval.
    assert rl.acquire(1) == pytest.approx(1.0)


def test_over_a_long_run_the_rate_holds():
    rl, clock = limiter(30, burst=1)  # one every 2 s
    start = clock.now
    for _ in range(31):
        rl.acquire()
    assert clock.now - start == pytest.approx(60.0)


def test_a_wait_past_the_deadline_raises_and_takes_nothing():
    rl, clock = limiter(60, burst=1)
    rl.acquire()
    with pytest.raises(DeadlineExceeded) as raised:
        rl.acquire(1, deadline=clock.now + 0.5)
    assert raised.value.problems[0].reason == "RATE_LIMITED"
    assert clock.slept == []
    # Nothing was reserved by the failed call: the next token is still 1 s away.
    assert rl.acquire(1, deadline=clock.now + 1.0) == pytest.approx(1.0)


def test_no_wait_needed_passes_any_deadline():
    rl, clock = limiter(60, burst=5)
    assert rl.acquire(3, deadline=clock.now) == 0.0


def test_concurrent_callers_are_served_one_interval_apart():
    clock = FakeClock()
    lock = threading.Lock()
    waits: list[float] = []
    rl = RateLimiter(60, burst=1, clock=clock, sleep=lambda s: None)

    def take() -> None:
        wait = rl.acquire()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Time stood still, so the reservations queue up: 0, 1, 2, ... 9 s.
    assert sorted(waits) == pytest.approx([float(i) for i in range(10)])


@pytest.mark.parametrize("args", [(0, None), (-5, None), (60, 0)])
def test_bad_settings_are_refused(args: tuple[int, int | None]):
    with pytest.raises(ValueError):
        RateLimiter(*args)


def test_negative_n_is_refused():
    with pytest.raises(ValueError):
        RateLimiter(60).acquire(-1)
