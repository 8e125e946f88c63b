"""A watched branch: one generation of a program that trims by confidence, streamed from the
worker with top-k logprobs whatever its client asked, read token by token, answered in the form
the client asked for.

Owns the rewriting of such a request (stream, `return_logprob`, `top_logprobs_num`), the
reading of SGLang's native stream events (`meta_info.output_top_logprobs`, cumulative by
default or per chunk with `--incremental-streaming-output`), the calls into the program's pure
`trimming.ConfidenceTrimmer`, and what the client gets back: the events without logprobs it did
not ask for, or one JSON reply assembled from them; a trimmed branch's last event says
`finish_reason: {"type": "abort", "reason": "low_confidence"}`. The abort itself is the
caller's (`on_trim`); forwarding and token accounting are `core`'s.

A cumulative stream repeats every earlier position in each event, so parsing each event whole
costs O(n²) over a branch of n tokens (seconds at 2,000 tokens, on the event loop). Once the
stream is known to be cumulative, a non-final event is read from its bytes: the new positions of
`output_top_logprobs` are sliced out after where the last event's list ended (the bytes before
are the same), and only they are parsed; the client's copy is the raw event, or the raw event
with the logprob keys it did not ask for cut out between the keys around them (key names cannot
occur inside a JSON string, their quotes would be escaped). An event without the layout this
expects is parsed whole, as is the last one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from dynasor_sgl.policy.logprobs import position_confidence, top_logprob_values
from dynasor_sgl.policy.trimming import BranchConfidence, ConfidenceTrimmer
from dynasor_sgl.router import dialect
from dynasor_sgl.router.forward import Reply
from dynasor_sgl.router.program import Program

LOW_CONFIDENCE = "low_confidence"
_TOP_KEYS = ("output_top_logprobs", "input_top_logprobs")
_OUTPUT_KEYS = ("output_token_logprobs", "output_top_logprobs", "output_token_ids_logprobs")
_JSON = {"Content-Type": "application/json"}
_FINISH = b'"finish_reason":'
_TOPS = b'"output_top_logprobs":'


def _key(name: str) -> bytes:
    """How a key of `meta_info` after its first starts in SGLang's compact JSON."""
    return b',"' + name.encode() + b'":'


@dataclass
class Watch:
    """One branch's generation under confidence trimming, and what its client asked for.

    A non-streaming client's one reply is the last event of a cumulative stream (SGLang's
    default), or joined from the chunks of an incremental one; either way an abort event (the
    worker's) carries the whole text and logprobs so far but only the last token id.
    """

    trimmer: ConfidenceTrimmer
    topk: int
    client_stream: bool
    client_logprob: bool
    client_topk: int
    branch: BranchConfidence = field(init=False)
    trimmed: bool = False
    seen: int = 0  # positions of output_top_logprobs read so far
    incremental: bool | None = None  # the worker's stream kind, known from its second event
    final: dict[str, Any] | None = None  # the last event, rewritten for the client
    worker_abort: bool = False  # the worker ended it with an abort event
    error: dict[str, Any] | None = None  # an error event, if the stream ended in one
    ids: list[Any] = field(default_factory=list)  # output ids so far (non-streaming client)
    pieces: list[str] = field(default_factory=list)  # incremental: the text chunks
    lists: dict[str, list[Any]] = field(default_factory=dict)  # incremental: logprob chunks
    tops_at: int = -1  # cumulative: where the last event read by bytes had its top-k list
    tops_len: int = 0  # ... and that list's length in bytes
    finish_at: int = 0  # cumulative: where the last such event had its finish_reason
    ids_from: bytes | None = None  # cumulative: the last event read by bytes (its output_ids)
    cuts: list[list[Any]] = field(default_factory=list)  # [first key, key after, at, to]

    def __post_init__(self) -> None:
        self.branch = self.trimmer.branch()

    async def relay(
        self, chunks: AsyncGenerator[bytes, None], on_trim: Callable[[], None]
    ) -> AsyncGenerator[bytes, None]:
        """The worker's stream `chunks`, read and rewritten event by event (for a streaming
        client; nothing is yielded for a non-streaming one, see `collect`); `on_trim` is called
        once, when the branch falls below the program's threshold."""
        parts: list[bytes] = []  # an event's bytes so far, not joined until it is whole
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    parts.append(chunk)
                    if b"\n" not in chunk:
                        continue
                    events, rest = _split(b"".join(parts) if len(parts) > 1 else chunk)
                    parts = [rest] if rest else []
                    out = b"".join(self._event(e, on_trim) for e in events)
                    if out:
                        yield out
                if b"".join(parts).strip():
                    yield self._event(b"".join(parts), on_trim)
        finally:
            done = (self.final or {}).get("meta_info", {}).get("completion_tokens")
            ended = isinstance(done, int) and done > 0 and not self.worker_abort
            self.trimmer.finished(self.branch, aborted=self.trimmed or not ended)

    async def collect(self, events: AsyncGenerator[bytes, None]) -> Reply:
        """The whole stream as the one JSON reply a non-streaming client expects."""
        async with contextlib.aclosing(events):
            async for _ in events:
                pass
        final = self.final
        if final is None:
            error = self.error or {"error": {"message": "the worker's stream ended in nothing"}}
            info = error.get("error")
            code = info.get("code") if isinstance(info, dict) else None
            return Reply(code if isinstance(code, int) else 400, orjson.dumps(error), dict(_JSON))
        meta = final["meta_info"]
        if self.worker_abort and self.ids_from is not None:  # the ids before the abort
            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                self.ids = orjson.loads(self.ids_from[6:])["output_ids"]
        if self.worker_abort or self.incremental:
            final["output_ids"] = self.ids
        if self.incremental and not self.worker_abort:
            final["text"] = "".join(self.pieces)
            meta.update((k, v) for k, v in self.lists.items() if k in meta)
        self._strip(meta)
        return Reply(200, orjson.dumps(final), dict(_JSON))

    def _event(self, raw: bytes, on_trim: Callable[[], None]) -> bytes:
        raw = raw.strip(b"\r\n")
        quick = self._quick(raw) if self.incremental is False else None
        if quick is not None:
            self._feed(self._confidences(quick[0]), on_trim)
            return quick[1]
        self.tops_at = -1  # read whole: the next quick read finds the list afresh
        if not raw.startswith(b"data: {"):
            return raw + b"\n\n" if raw and self.client_stream else b""
        try:
            obj = orjson.loads(raw[6:])
        except orjson.JSONDecodeError:
            return raw + b"\n\n" if self.client_stream else b""
        meta = obj.get("meta_info") if isinstance(obj, dict) else None
        if not isinstance(meta, dict):
            if isinstance(obj, dict) and "error" in obj:
                self.error = obj
            return raw + b"\n\n" if self.client_stream else b""
        self._feed(self._new_confidences(meta), on_trim)
        if self.incremental is False and self.client_stream:
            self._plan_cuts(meta)
        reason = meta.get("finish_reason")
        abort = isinstance(reason, dict) and reason.get("type") == "abort"
        if not self.client_stream:
            self._gather(obj, meta, abort)
        if reason is not None:
            self.final, self.worker_abort = obj, abort
            self._close(meta)
        if not self.client_stream:
            return b""
        self._strip(meta)
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def _feed(self, confidences: list[float], on_trim: Callable[[], None]) -> None:
        if self.trimmer.feed(self.branch, confidences) and not self.trimmed:
            self.trimmed = True
            self.trimmer.trimmed(self.branch)
            on_trim()

    def _quick(self, raw: bytes) -> tuple[list[Any], bytes] | None:
        """A non-final event of a cumulative stream read from its bytes (see the module
        docstring): its new top-k positions and what its client gets; None to parse it whole."""
        finish = raw.find(_FINISH, self.finish_at)
        finish = raw.find(_FINISH) if finish < 0 else finish
        if finish < 0 or not raw.startswith(b"null", finish + len(_FINISH)):
            return None
        key = raw.find(_TOPS, self.tops_at - len(_TOPS)) if self.tops_at >= 0 else raw.find(_TOPS)
        start = key + len(_TOPS)
        if key < 0 or raw[start : start + 1] != b"[":
            return None
        try:
            if self.tops_at < 0:  # the whole list, once
                end = start + 2 if raw.startswith(b"[]", start) else raw.find(b"]]]", start) + 3
                new = orjson.loads(raw[start:end])[self.seen :] if end > start + 2 else []
            else:  # the bytes up to the last event's closing bracket are that event's list
                at = start + self.tops_len - 1
                mark = raw[at : at + 1]
                end = at + 1 if mark == b"]" else raw.find(b"]]]", at) + 3
                new = orjson.loads(b"[" + raw[at + 1 : end]) if mark == b"," else []
        except orjson.JSONDecodeError:
            return None
        if end < start + 2 or not isinstance(new, list) or raw[end : end + 1] not in (b",", b"}"):
            return None
        out = self._cut(raw) if self.client_stream else b""
        if out is None:
            return None
        self.finish_at, self.tops_at, self.tops_len = finish, start, end - start
        self.seen += len(new)
        self.ids_from = raw
        return new, out

    def _plan_cuts(self, meta: dict[str, Any]) -> None:
        """From a cumulative event read whole: each run of keys its client gets none of, as
        the key that starts it and the key after it (None: the end of `meta_info`)."""
        keys = list(meta)
        self.cuts = []
        for i, key in enumerate(keys):
            if not self._hidden(key) or (i and self._hidden(keys[i - 1])):
                continue
            after = next((k for k in keys[i + 1 :] if not self._hidden(k)), None)
            self.cuts.append([_key(key), None if after is None else _key(after), 0, 0])

    def _hidden(self, key: str) -> bool:
        """Whether the client gets none of `key` (what `_strip` deletes)."""
        if not self.client_logprob:
            return "logprob" in key
        return key in _TOP_KEYS and not self.client_topk

    def _cut(self, raw: bytes) -> bytes | None:
        """A cumulative event for a streaming client, without the logprob keys it did not ask
        for; None to parse it whole."""
        if self.client_logprob and self.client_topk >= self.topk:
            return raw + b"\n\n"
        if self.client_logprob and self.client_topk:  # fewer top-k than the watch reads
            return None
        pieces, done = [], 0
        for plan in self.cuts:
            first, after, at, to = plan
            at = raw.find(first, max(at, done))
            if after is None:
                to = len(raw) - 2 if raw.endswith(b"}}") else -1
            else:
                to = raw.find(after, max(at, to))
            if at < 0 or to < at:
                return None
            pieces.append(raw[done:at])
            plan[2:], done = [at, to], to
        return b"".join(pieces) + raw[done:] + b"\n\n"

    def _gather(self, obj: dict[str, Any], meta: dict[str, Any], abort: bool) -> None:
        """Keep what a non-streaming client's reply is joined from (see the class docstring)."""
        ids = obj.get("output_ids")
        if self.incremental is False:  # cumulative: the latest event holds everything
            if isinstance(ids, list) and not abort:
                self.ids, self.ids_from = ids, None
            return
        if abort:  # whole text and logprobs, and a repeat of the last id
            return
        if isinstance(ids, list):
            self.ids.extend(ids)
        if isinstance(obj.get("text"), str):
            self.pieces.append(obj["text"])
        for key in _OUTPUT_KEYS if self.client_logprob else ():
            if isinstance(meta.get(key), list):
                self.lists.setdefault(key, []).extend(meta[key])

    def _new_confidences(self, meta: dict[str, Any]) -> list[float]:
        tops = meta.get("output_top_logprobs")
        if not isinstance(tops, list):
            return []
        if len(tops) == meta.get("completion_tokens"):  # cumulative: the whole list each time
            if self.seen and self.incremental is None:
                self._cumulative()
            new, self.seen = tops[self.seen :], max(self.seen, len(tops))
        else:  # incremental streaming: this chunk's positions only
            self.incremental = True
            new, self.seen = tops, self.seen + len(tops)
        return self._confidences(new)

    def _confidences(self, positions: list[Any]) -> list[float]:
        confidences = []
        for position in positions:
            try:
                values = top_logprob_values(position, self.topk)
                if values:
                    confidences.append(position_confidence(values))
            except (ValueError, TypeError, IndexError):  # a malformed position: not a reading
                continue
        return confidences

    def _cumulative(self) -> None:
        """The second event repeats the first: a cumulative stream; drop the gathered chunks."""
        self.incremental = False
        self.pieces.clear()
        self.lists.clear()

    def _close(self, meta: dict[str, Any]) -> None:
        """The last event: the branch's confidence for the program, and the trim's reason."""
        meta["confidence"] = {
            "mean": self.branch.mean,
            "lowest_group": self.branch.lowest_group,
            "group": self.branch.group,
            "tokens": self.branch.tokens,
            "threshold": self.trimmer.threshold,
        }
        if self.trimmed:
            reason = meta.get("finish_reason")
            kind = reason.get("type") if isinstance(reason, dict) else None
            late = kind not in (None, "abort")
            ended = f" (it ended by {kind} before the abort reached it)" if late else ""
            meta["finish_reason"] = {
                "type": "abort",
                "reason": LOW_CONFIDENCE,
                "message": f"trimmed: its group confidence fell below the warm-up threshold "
                f"{self.trimmer.threshold:.4g}{ended}",
            }

    def _strip(self, meta: dict[str, Any]) -> None:
        """Leave only the logprobs the client asked for."""
        if not self.client_logprob:
            for key in [k for k in meta if "logprob" in k]:
                del meta[key]
            return
        for key in _TOP_KEYS:
            if key not in meta:
                continue
            if not self.client_topk:
                del meta[key]
            elif self.client_topk < self.topk and isinstance(meta[key], list):
                meta[key] = [p[: self.client_topk] if p else p for p in meta[key]]


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    """The whole SSE events in `data` (without their blank line) and the bytes after them.
    Looks for single newlines, which memchr finds fast (a two-byte search is some 50 times
    slower, and a cumulative stream's events are large); compact JSON has none of its own."""
    events: list[bytes] = []
    start = at = 0
    while (at := data.find(b"\n", at)) >= 0:
        if data[at + 1 : at + 2] == b"\n":
            events.append(data[start:at])
            start = at = at + 2
        else:
            at += 1
    return events, data[start:]


def prepare(prog: Program | None, path: str, body: dict[str, Any]) -> Watch | None:
    """A Watch for a generation of a program that trims by confidence, with `body` rewritten to
    stream top-k logprobs from the worker; None (body untouched) for anything else, prefills
    (`max_new_tokens` 0) included. Only a branch that generated tokens and ended on its own can
    be a warm-up reading."""
    if prog is None or prog.trimmer is None or path != dialect.NATIVE:
        return None
    params = body.get("sampling_params")
    if isinstance(params, dict) and params.get("max_new_tokens") == 0:
        return None  # a prefill (SGLang's frontend caches a fork's prefix so): no tokens to read
    client_logprob = body.get("return_logprob") is True
    asked = body.get("top_logprobs_num")
    client_topk = asked if client_logprob and isinstance(asked, int) and asked > 0 else 0
    topk = prog.config.confidence_topk
    watch = Watch(prog.trimmer, topk, body.get("stream") is True, client_logprob, client_topk)
    body.update(stream=True, return_logprob=True, top_logprobs_num=max(topk, client_topk))
    return watch
