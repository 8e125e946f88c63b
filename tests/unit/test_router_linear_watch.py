"""The confidence watch reads SGLang's cumulative stream in time linear in its tokens: each event's
new top-k positions are sliced from its bytes, and what the client gets is what reading every
event whole gives. Events are built as SGLang 0.5.15 writes them: compact JSON by orjson
(`srt/utils/json_response.py`, `dumps_json`), `text` and `output_ids` before `meta_info`, whose
logprob keys come in `add_logprob_to_meta_info`'s order (`srt/managers/tokenizer_manager.py`)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from dynasor_sgl.policy.trimming import ConfidenceTrimmer
from dynasor_sgl.router import watch as watch_module
from dynasor_sgl.router.watch import Watch

SURE = [-0.01, -6.0, -6.0, -6.0, -6.0]  # c = 4.802
UNSURE = [-1.5, -1.6, -1.7, -1.8, -1.9]  # c = 1.7


def position(i: int, drift: int) -> list[list[Any]]:
    values = UNSURE if i >= drift else SURE
    return [[v + i * 1e-4, 1000 + j, None] for j, v in enumerate(values)]


def meta(done: int, drift: int, reason: dict[str, Any] | None) -> dict[str, Any]:
    tops = [position(i, drift) for i in range(done)]
    out: dict[str, Any] = {
        "id": "r1",
        "finish_reason": reason,
        "prompt_tokens": 7,
        "weight_version": "default",
        "num_retractions": 0,
        "input_token_logprobs": [[None, 1, None]],
        "output_token_logprobs": [t[0] for t in tops],
        "output_token_logprobs_length": done,
        "input_top_logprobs": [None],
        "output_top_logprobs": tops,
        "reasoning_tokens": 0,
        "completion_tokens": done,
        "cached_tokens": 0,
    }
    if reason is not None:
        out["e2e_latency"] = 0.5
    return out


def stream(n: int, drift: int = 10**9, end: str = "length") -> list[dict[str, Any]]:
    """A cumulative stream of n tokens; an abort's last event repeats only the last id."""
    events = []
    for done in range(1, n + 1):
        reason = {"type": end} if done == n else None
        ids = [done - 1] if reason and end == "abort" else list(range(done))
        events.append(
            {"text": " tok" * done, "output_ids": ids, "meta_info": meta(done, drift, reason)}
        )
    return events


def read(events: list[bytes], **client: Any) -> tuple[Watch, list[Any], int]:
    """What a watch makes of `events`: the parsed events or reply its client gets, trims."""
    shape = {"client_stream": False, "client_logprob": False, "client_topk": 0} | client
    watch = Watch(ConfidenceTrimmer(4, 90.0, 1), 5, **shape)
    watch.trimmer.threshold = 3.0
    trims: list[int] = []
    out = [watch._event(e, lambda: trims.append(1)) for e in events]
    if shape["client_stream"]:
        got = [orjson.loads(o.strip()[6:]) for o in out if o.strip()]
    else:
        assert not any(out)
        got = []
    return watch, got, len(trims)


def compact(events: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + orjson.dumps(e) for e in events]


def spaced(events: list[dict[str, Any]]) -> list[bytes]:
    """The same events in a layout the byte reading does not expect: every event read whole."""
    return [b"data: " + json.dumps(e).encode() for e in events]


def reply(watch: Watch) -> Any:
    async def nothing() -> Any:
        return
        yield

    return orjson.loads(asyncio.run(watch.collect(nothing())).body)


def test_a_cumulative_stream_is_parsed_once_per_position(monkeypatch: pytest.MonkeyPatch) -> None:
    events = compact(stream(300))
    parsed: list[int] = []

    def loads(data: bytes | str) -> Any:
        parsed.append(len(data))
        return orjson.loads(data)

    fake = SimpleNamespace(loads=loads, dumps=orjson.dumps, JSONDecodeError=orjson.JSONDecodeError)
    monkeypatch.setattr(watch_module, "orjson", fake)
    for client in ({}, {"client_stream": True}, {"client_stream": True, "client_logprob": True}):
        parsed.clear()
        watch, _, _ = read(events, **client)
        assert watch.branch.tokens == 300
        # Whole events would be ~150 times the last one; new positions and a few events whole.
        assert sum(parsed) < 4 * len(events[-1]), client


CLIENTS = [
    {},
    {"client_logprob": True},
    {"client_logprob": True, "client_topk": 5},
    {"client_stream": True},
    {"client_stream": True, "client_logprob": True},
    {"client_stream": True, "client_logprob": True, "client_topk": 5},
    {"client_stream": True, "client_logprob": True, "client_topk": 3},
    {"client_stream": True, "client_logprob": True, "client_topk": 8},
]


@pytest.mark.parametrize(
    "client", CLIENTS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())
)
@pytest.mark.parametrize("end", ["length", "abort", "trimmed"])
def test_reading_by_bytes_gives_what_reading_whole_gives(
    client: dict[str, Any], end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick_reads: list[bool] = []
    read_quick = Watch._quick

    def spy(self: Watch, raw: bytes) -> Any:
        result = read_quick(self, raw)
        quick_reads.append(result is not None)
        return result

    monkeypatch.setattr(Watch, "_quick", spy)
    events = stream(60, drift=30 if end == "trimmed" else 10**9, end=end.replace("trimmed", "stop"))
    quick, got, trims = read(compact(events), **client)
    # Two events tell the stream kind, the last is read whole; so is a client asking fewer top-k.
    assert sum(quick_reads) == (0 if client.get("client_topk") == 3 else 57)
    quick_reads.clear()
    whole, want, whole_trims = read(spaced(events), **client)
    assert not any(quick_reads)
    assert (trims, quick.trimmed) == (whole_trims, whole.trimmed) == (int(end == "trimmed"),) * 2
    assert (quick.branch.tokens, quick.branch.lowest_group) == (60, whole.branch.lowest_group)
    if client.get("client_stream"):
        assert got == want
        assert len(got) == 60
    else:
        assert reply(quick) == reply(whole)
        body = reply(quick)
        assert body["output_ids"] == list(range(60 - (end == "abort")))


def test_a_stream_whose_layout_changes_is_read_whole_from_then_on() -> None:
    events = stream(20)
    mixed = compact(events[:10]) + spaced(events[10:])
    watch, got, _ = read(mixed, client_stream=True)
    assert watch.branch.tokens == 20
    want = [{**e, "meta_info": strip(e["meta_info"])} for e in events]
    assert got[:-1] == want[:-1]
    assert got[-1]["meta_info"].pop("confidence")["tokens"] == 20
    assert got[-1] == want[-1]


def strip(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if "logprob" not in k}


def relay(chunks: list[bytes]) -> bytes:
    """A streaming client's bytes from a relay of `chunks`."""

    async def source() -> Any:
        for chunk in chunks:
            yield chunk

    async def main() -> bytes:
        watch = Watch(ConfidenceTrimmer(4, 90.0, 1), 5, True, False, 0)
        return b"".join([out async for out in watch.relay(source(), lambda: None)])

    return asyncio.run(main())


@pytest.mark.parametrize("size", [1, 7, 1000, 10**6])
def test_a_relay_cut_anywhere_gives_what_whole_events_give(size: int) -> None:
    sse = b"".join(e + b"\n\n" for e in compact(stream(30))) + b"data: [DONE]\n\n"
    whole = relay([e + b"\n\n" for e in sse.split(b"\n\n") if e])
    assert relay([sse[i : i + size] for i in range(0, len(sse), size)]) == whole
    events = whole.split(b"\n\n")
    assert len(events) == 32 and events[-2] == b"data: [DONE]" and events[-1] == b""
    assert b"logprob" not in whole
