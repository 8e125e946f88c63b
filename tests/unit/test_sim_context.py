"""The step model's context term on hand-computed cases: a decode step costs
0.1 s + 0.01 s per request + 0.001 s per context token (prompt + tokens generated so far) of
each decoding request; a prefill step 0.1 s (prefill tokens free here)."""

from __future__ import annotations

import pytest

from dynasor_sgl.sim.engine import Engine
from dynasor_sgl.sim.profile import Profile, TimedRun, fit_run_model
from dynasor_sgl.sim.queue import Finished, Request

CTX = Profile(
    "ctx", base_s=0.1, per_request_s=0.01, per_prefill_token_s=0.0, per_context_token_s=0.001
)


def req(rid: str, prompt: int, new: int, shared: int = 0, pid: str = "") -> Request:
    return Request(rid, pid or rid, shared, prompt - shared, new, new)


def run_until(engine: Engine, t: float = float("inf")) -> list[Finished]:
    done: list[Finished] = []
    while engine.busy and engine.wake_at <= t:
        done += engine.on_wake(engine.wake_at)
    return done


def ends(done: list[Finished]) -> dict[str, float]:
    return {f.request.rid: round(f.at, 9) for f in done}


def test_one_request_pays_for_its_growing_context() -> None:
    e = Engine(CTX)
    e.submit(req("a", 10, 3), 0.0)
    done = run_until(e)
    # prefill 0.1 s (first token); decode with context 11: 0.121 s; with context 12: 0.122 s
    assert ends(done) == {"a": 0.343}
    assert e.busy_s == pytest.approx(0.343)
    assert e.context() == 0


def test_two_prompt_lengths_in_one_batch() -> None:
    e = Engine(CTX)
    e.submit(req("a", 10, 2), 0.0)
    e.submit(req("b", 50, 4), 0.0)
    # prefill 0.1; step 1: 0.12 + (11 + 51) ms = 0.182, a ends at 0.282; then b alone with
    # contexts 52, 53: 0.162, 0.163
    assert ends(run_until(e)) == {"a": 0.282, "b": 0.607}


def test_a_cached_prefix_counts_as_context() -> None:
    e = Engine(CTX)
    e.submit(Request("a", "p", 40, 10, 2, 2, warm_len=40), 0.0)
    done = run_until(e)
    # prefills 10 tokens only, but decodes over all 50 + 1: 0.1 + 0.11 + 0.051
    assert done[0].request.prefilled == 10
    assert ends(done) == {"a": 0.261}


def test_abort_mid_run_counts_the_steps_done_and_cuts_the_run() -> None:
    e = Engine(CTX)
    e.submit(req("a", 10, 100), 0.0)
    e.submit(req("b", 10, 100), 0.0)
    run_until(e, 0.1)  # the prefill step
    # steps of two from 0.1: 0.142, 0.144, 0.146 (contexts 2 x 11, 12, 13): ends 0.242, 0.386,
    # 0.532; at 0.4 two steps are done, the third is in progress
    aborted = e.abort("a", 0.4)
    assert aborted is not None and aborted.request.generated == 3
    assert e.wake_at == pytest.approx(0.532)
    run_until(e, 0.532)
    # b has 4 tokens; its 96 steps left alone start at context 10 + 4: 0.124 s, +1 ms a step
    assert e.context() == 14
    assert e.wake_at - 0.532 == pytest.approx(96 * 0.124 + 0.001 * 96 * 95 / 2)


def test_no_context_term_is_the_old_model() -> None:
    flat = Profile("f", base_s=0.1, per_request_s=0.01, per_prefill_token_s=0.0)
    assert flat.per_context_token_s == 0.0
    assert Profile.from_dict(flat.to_dict() | {"per_context_token_s": 0.0}) == flat
    e = Engine(flat)
    e.submit(req("a", 10, 3), 0.0)
    assert ends(run_until(e)) == {"a": 0.32}
    with pytest.raises(ValueError, match="per_context_token_s"):
        Profile("bad", 0.1, 0.01, 0.0, per_context_token_s=-1.0)


def test_run_fit_recovers_all_five_terms() -> None:
    truth = {
        "base_s": 0.05,
        "prefill_base_s": 0.07,
        "per_request_s": 0.004,
        "per_context_token_s": 2e-5,
        "per_prefill_token_s": 5e-4,
    }
    runs = []
    for b, prompt, new in [(1, 12, 128), (4, 12, 128), (16, 12, 128), (1, 512, 32), (8, 512, 32)]:
        d = new - 1
        ctx = b * (d * prompt + d * new / 2)
        runs.append(TimedRun(d, 1, d * b, ctx, b * prompt, 0.0))
    runs += [TimedRun(0, 1, 0, 0, p, 0.0) for p in (64, 1024)]
    runs = [
        r._replace(seconds=sum(c * v for c, v in zip(r[:5], truth.values(), strict=True)))
        for r in runs
    ]
    fit, clipped = fit_run_model(runs)
    assert clipped == []
    assert fit == pytest.approx(truth, rel=1e-6)


def test_run_fit_clips_a_negative_term_and_refits() -> None:
    # 10 steps take less with more context (-2 ms a token): clipped; then 10 steps of base_s
    # fit both runs' mean, 0.9 s; terms never measured (all-0 columns) are 0
    runs = [TimedRun(10, 0, 0, 100, 0, 1.0), TimedRun(10, 0, 0, 200, 0, 0.8)]
    fit, clipped = fit_run_model(runs)
    assert clipped == ["per_context_token_s"]
    assert fit == pytest.approx(dict.fromkeys(fit, 0.0) | {"base_s": 0.09})
    with pytest.raises(ValueError):
        fit_run_model([])
