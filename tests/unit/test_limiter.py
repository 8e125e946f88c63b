"""The adaptive in-flight limit on a virtual clock, against a synthetic worker with a knee.

The worker model: a decode step takes `base_s` up to `knee` requests in the batch and grows
in proportion past it, so tokens/s grow linearly with concurrency up to the knee and stay flat
after (latency then grows without more throughput: overload). The client always has more
requests than the limit lets through (a backlog waits in the router), unless a test says not.
"""

from __future__ import annotations

import statistics

import pytest

from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.scheduling.limiter import InflightLimiter, LimiterConfig, LimitMode

TOKENS = 100  # tokens each request generates


def drive(
    limiter: InflightLimiter,
    knee: int,
    completions: int,
    demand: int = 10_000,
    base_s: float = 0.05,
    start: float = 0.0,
) -> tuple[list[int], float]:
    """Feeds `completions` completions of the model worker; returns the limit after each
    and the clock at the end."""
    now, limits = start, []
    for _ in range(completions):
        running = min(limiter.limit, demand)
        step_s = base_s * max(1.0, running / knee)
        throughput = running / step_s  # tokens/s
        now += TOKENS / throughput  # the next completion
        queued = int(demand > limiter.limit)
        limits.append(limiter.on_complete(now, TOKENS * step_s, TOKENS, running, queued))
    return limits, now


def settled(limits: list[int]) -> float:
    return statistics.median(limits[len(limits) // 2 :])


@pytest.mark.parametrize("knee", [24, 40])
def test_rises_to_the_knee_from_the_cpu_default(knee: int) -> None:
    limiter = InflightLimiter(LimiterConfig.for_device("cpu", max_limit=256))
    assert limiter.limit == 12
    limits, _ = drive(limiter, knee, 4000)
    assert max(limits) > knee  # it probed past the knee ...
    assert 0.75 * knee <= settled(limits) <= 1.3 * knee  # ... and settled there


def test_falls_to_the_knee_under_overload() -> None:
    """Started far past the knee: latency is 4x what the knee gives at the same tokens/s."""
    limiter = InflightLimiter(LimiterConfig(initial=64, min_limit=2, max_limit=128))
    limits, _ = drive(limiter, 16, 4000)
    assert min(limits[:400]) < 64
    assert 12 <= settled(limits) <= 21


def test_a_knee_that_drops_midway_is_followed_down() -> None:
    limiter = InflightLimiter(LimiterConfig(initial=12, max_limit=256))
    first, now = drive(limiter, 48, 3000)
    assert settled(first) >= 36
    later, _ = drive(limiter, 12, 3000, start=now)  # e.g. prompts got much longer
    assert settled(later) <= 16


def test_the_gpu_default_climbs_towards_a_gpu_knee() -> None:
    limiter = InflightLimiter(LimiterConfig.for_device("gpu"))
    assert limiter.limit == 128
    limits, _ = drive(limiter, 284, 20_000, base_s=0.013)
    assert 0.75 * 284 <= settled(limits) <= 1.3 * 284


def test_stays_within_its_bounds() -> None:
    low = InflightLimiter(LimiterConfig(initial=8, min_limit=6, max_limit=20))
    limits, _ = drive(low, 200, 2000)  # the knee is far above max: it climbs to max
    assert max(limits) == 20 and min(limits) >= 6
    assert settled(limits) == 20
    high = InflightLimiter(LimiterConfig(initial=8, min_limit=6, max_limit=20))
    limits, _ = drive(high, 1, 2000)  # the knee is below min: it falls to min, no further
    assert min(limits) == 6 and max(limits) <= 20


def test_an_app_limited_worker_keeps_its_limit() -> None:
    """With fewer requests than the limit, more concurrency cannot show: the limit holds."""
    limiter = InflightLimiter(LimiterConfig(initial=12))
    limits, _ = drive(limiter, 48, 2000, demand=5)
    assert set(limits) == {12}


def test_fixed_never_moves() -> None:
    limiter = InflightLimiter(LimiterConfig.fixed(12))
    limits, _ = drive(limiter, 48, 1000)
    assert set(limits) == {12}
    assert LimiterConfig.for_device("gpu", "fixed").initial == 128
    assert LimiterConfig.for_device("gpu", LimitMode.FIXED).max_limit == 128


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"initial": 100}, "initial"),
        ({"min_limit": 0}, "min_limit"),
        ({"max_limit": 2}, "max_limit"),
        ({"window_s": 0.0}, "window_s"),
        ({"gain": 1.0}, "gain"),
        ({"step_fraction": 0}, "step_fraction"),
        ({"busy_share": 2}, "busy_share"),
        ({"mode": "magic"}, "mode"),
    ],
)
def test_bad_settings_name_the_value(overrides: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LimiterConfig(**overrides)  # type: ignore[arg-type]


def test_an_unknown_device_is_an_error() -> None:
    with pytest.raises(ValueError, match="tpu"):
        LimiterConfig.for_device("tpu")  # type: ignore[arg-type]


def test_the_router_config_builds_the_limiter() -> None:
    urls = ("http://w",)
    fixed = RouterConfig(worker_urls=urls, inflight_limit="fixed", max_inflight_per_worker=7)
    assert fixed.limiter() == LimiterConfig.fixed(7)
    adaptive = RouterConfig(worker_urls=urls, inflight_limit="adaptive", max_inflight_per_worker=2)
    assert (adaptive.limiter().initial, adaptive.limiter().min_limit) == (2, 2)  # widened
    assert adaptive.limiter().max_limit == LimiterConfig.max_limit
    with pytest.raises(ValueError, match="inflight_limit"):
        RouterConfig(worker_urls=urls, inflight_limit="always")
