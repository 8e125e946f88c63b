"""Confidence trimming in the router, against a fake worker that emits chosen logprobs: the
warm-up threshold, a branch cut short mid-stream, and each client answered in its own form."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from router_harness import BRANCH, LONG, gen, register, run, setup, sse_events

from dynasor_sgl.policy.trimming import ConfidenceTrimmer
from dynasor_sgl.router.watch import Watch

SURE = [-0.01, -6.0, -6.0, -6.0, -6.0, -6.0]  # c = 4.802 over the top 5
UNSURE = [-1.5, -1.6, -1.7, -1.8, -1.9, -2.0]  # c = 1.7
DRIFT_AT = 12  # a "ramble" prompt turns unsure from this position on
TRIM = {"confidence_window": 4, "warmup": 2, "confidence_percentile": 90, "confidence_topk": 5}


def logprobs(prompt: str, position: int) -> list[float]:
    return UNSURE if prompt.startswith("ramble") and position >= DRIFT_AT else SURE


async def branch(
    client: httpx.AsyncClient, pid: str, name: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(f"/programs/{pid}/generate", json=body, headers={BRANCH: name})


async def warm_up(client: httpx.AsyncClient, pid: str) -> None:
    replies = await asyncio.gather(
        *(branch(client, pid, f"w{i}", gen("steady", max_new=20)) for i in range(2))
    )
    for reply in replies:
        meta = reply.json()["meta_info"]
        assert meta["finish_reason"]["type"] == "length"
        assert meta["confidence"]["threshold"] is None  # set once both have finished


def trimmed_count(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('dynasor_branches_trimmed_total{reason="low_confidence"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental"])
def test_a_rambling_branch_is_trimmed_mid_stream_and_answered_as_json(incremental: bool) -> None:
    async def body() -> None:
        async with setup() as (client, router, fakes):
            fakes[0].logprobs = logprobs
            fakes[0].incremental = incremental
            await register(client, "p", **TRIM)
            await warm_up(client, "p")
            prog = router.programs.get("p")
            assert prog.trimmer is not None
            assert prog.trimmer.threshold is not None
            assert abs(prog.trimmer.threshold - 4.802) < 1e-6

            reply = await branch(client, "p", "s2", gen("ramble on", max_new=LONG))
            assert reply.status_code == 200, reply.text
            assert reply.headers["content-type"].startswith("application/json")
            out = reply.json()
            meta = out["meta_info"]
            assert meta["finish_reason"]["type"] == "abort"
            assert meta["finish_reason"]["reason"] == "low_confidence"
            # Cut soon after its first unsure token, far short of its budget.
            assert DRIFT_AT < meta["completion_tokens"] < 100
            assert out["text"] == " tok" * meta["completion_tokens"]
            assert out["output_ids"] == list(range(meta["completion_tokens"]))
            assert not [k for k in meta if "logprob" in k]  # the client asked for none
            assert meta["confidence"]["group"] < meta["confidence"]["threshold"]

            sent = fakes[0].generate_bodies[-1]
            assert sent["stream"] is True and sent["return_logprob"] is True
            assert sent["top_logprobs_num"] == 5
            assert fakes[0].aborts[-1] == {"rid": sent["rid"]}

            summary = (await client.get("/programs/p")).json()
            assert summary["confidence"]["trimmed"] == 1
            # Decided once an unsure token entered the group, at or before where it ended.
            [at] = summary["confidence"]["trimmed_at"]
            assert DRIFT_AT < at <= meta["completion_tokens"]
            assert summary["trimmed"] == ["s2"]
            assert summary["aborted_requests"] == 1
            # Its tokens count: 2 × 20 warm-up tokens and the trimmed branch's.
            assert summary["tokens"]["completion"] == 40 + meta["completion_tokens"]
            assert trimmed_count((await client.get("/metrics")).text) == 1

            steady = await branch(client, "p", "s3", gen("steady", max_new=30))
            assert steady.json()["meta_info"]["finish_reason"]["type"] == "length"
            again = await branch(client, "p", "s2", gen("steady", max_new=5))
            assert again.status_code == 409  # a trimmed branch takes no more requests

    run(body)


def test_a_streaming_client_gets_a_stream_without_logprobs_it_did_not_ask_for() -> None:
    async def body() -> None:
        async with setup() as (client, _router, fakes):
            fakes[0].logprobs = logprobs
            await register(client, "p", **TRIM)
            await warm_up(client, "p")
            reply = await branch(client, "p", "s2", gen("ramble", max_new=LONG, stream=True))
            assert reply.headers["content-type"].startswith("text/event-stream")
            events = sse_events(reply.text)
            assert len(events) > DRIFT_AT
            assert all(not [k for k in e["meta_info"] if "logprob" in k] for e in events)
            last = events[-1]["meta_info"]
            assert last["finish_reason"]["reason"] == "low_confidence"
            assert last["completion_tokens"] < LONG
            assert trimmed_count((await client.get("/metrics")).text) == 1

    run(body)


@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental"])
def test_a_client_that_asked_for_fewer_logprobs_gets_that_many(incremental: bool) -> None:
    async def body() -> None:
        async with setup() as (client, _router, fakes):
            fakes[0].logprobs = logprobs
            fakes[0].incremental = incremental
            await register(client, "p", **TRIM)
            asked = gen("steady", max_new=6, return_logprob=True, top_logprobs_num=2)
            reply = await branch(client, "p", "s0", asked)
            out = reply.json()
            meta = out["meta_info"]
            assert (out["text"], out["output_ids"]) == (" tok" * 6, list(range(6)))
            assert len(meta["output_token_logprobs"]) == 6
            assert len(meta["output_top_logprobs"]) == 6
            assert all(len(p) == 2 for p in meta["output_top_logprobs"])
            assert fakes[0].generate_bodies[-1]["top_logprobs_num"] == 5
            assert abs(meta["confidence"]["mean"] - 4.802) < 1e-6

    run(body)


def test_warm_up_branches_are_never_trimmed_and_programs_without_it_are_untouched() -> None:
    async def body() -> None:
        async with setup() as (client, router, fakes):
            fakes[0].logprobs = logprobs
            await register(client, "p", **TRIM)
            # Both ramble, but no threshold exists while they run: they finish.
            replies = await asyncio.gather(
                *(branch(client, "p", f"w{i}", gen("ramble", max_new=30)) for i in range(2))
            )
            assert [r.json()["meta_info"]["finish_reason"]["type"] for r in replies] == [
                "length",
                "length",
            ]
            # A prefill (the frontend caching a fork's prefix) is neither watched nor a reading.
            await register(client, "r", **TRIM)
            await branch(client, "r", "main", gen("steady", max_new=0))
            assert "return_logprob" not in fakes[0].generate_bodies[-1]
            trimmer = router.programs.get("r").trimmer
            assert trimmer is not None and trimmer.warm == []
            await register(client, "q")
            plain = await branch(client, "q", "s0", gen("ramble", max_new=30))
            assert "confidence" not in plain.json()["meta_info"]
            sent = fakes[0].generate_bodies[-1]
            assert "return_logprob" not in sent and "stream" not in sent
            assert (await client.get("/programs/q")).json()["confidence"] is None

    run(body)


def _event(tops: list[list[float]], done: int, finish: dict[str, Any] | None = None) -> bytes:
    entries = [[[v, 1, None] for v in p] for p in tops]
    meta = {"completion_tokens": done, "output_top_logprobs": entries, "finish_reason": finish}
    return b"data: " + json.dumps({"text": "", "meta_info": meta}).encode()


def test_a_watch_reads_cumulative_and_incremental_streams_alike() -> None:
    for incremental in (False, True):
        watch = Watch(ConfidenceTrimmer(2, 50, 1), 2, False, False, 0)
        positions = [[-0.5, -1.5], [-1.0, -3.0], [-2.0, -2.0]]  # c = 1.0, 2.0, 2.0
        for done in range(1, 4):
            tops = positions[done - 1 : done] if incremental else positions[:done]
            out = watch._event(_event(tops, done), lambda: None)
            assert b"logprob" not in out  # the client asked for none
        assert watch.branch.tokens == 3
        assert watch.branch.mean is not None and abs(watch.branch.mean - 5 / 3) < 1e-9
        assert watch.branch.lowest_group == 1.5


def test_a_branch_that_ends_before_its_trim_lands_is_still_out_and_says_so() -> None:
    trimmer = ConfidenceTrimmer(2, 50, 1)
    trimmer.threshold = 3.0
    watch = Watch(trimmer, 2, False, False, 0)
    cut = []
    positions = [[-2.0, -6.0], [-1.0, -1.0], [-1.0, -1.0]]  # c = 4, 1, 1
    for done in (1, 2):
        watch._event(_event(positions[:done], done), lambda: cut.append(1))
    assert cut == [1]  # (4 + 1) / 2 = 2.5 < 3 at the second token
    watch._event(_event(positions, 3, {"type": "length", "length": 3}), lambda: cut.append(1))
    assert cut == [1]  # once
    assert watch.final is not None
    reason = watch.final["meta_info"]["finish_reason"]
    assert reason["type"] == "abort" and reason["reason"] == "low_confidence"
    assert "ended by length" in reason["message"]
