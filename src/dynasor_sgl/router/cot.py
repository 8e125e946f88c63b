"""Chain of thought with Certaindex early exit, run by the router itself (Dynasor-CoT).

A chat completion that asks for early exit runs here as a registered `cot` program: reasoning
in chunks of `probe_interval` tokens through the router's own forwarding path (native
`/generate`, so admission, rids and accounting are the usual ones); after each chunk a probe
asks, on the reasoning so far plus `PROBE_SUFFIX`, for the answer right away, while the next
chunk already runs on the same prefix (the worker's prefix cache serves both). The probe answers
go to the program's policy (probe consistency with the hesitation veto); when it stops the
program the router aborts the chunk in flight and the probe's answer is appended as the model
would write it. When the budget runs out during reasoning, a last probe supplies the answer
(budget forcing). Probe text never reaches the output. Knows nothing about the OpenAI shape
(that is `chat`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import orjson

from dynasor_sgl.answers.extraction import extract_probe_answer
from dynasor_sgl.policy.machine import Action, PolicyConfig, Report
from dynasor_sgl.router import dialect
from dynasor_sgl.router.core import Router
from dynasor_sgl.router.effort import EarlyExit
from dynasor_sgl.router.errors import ApiError, bad_gateway, bad_request
from dynasor_sgl.router.forward import Reply
from dynasor_sgl.router.reasoning import THINK_CLOSE, THINK_OPEN
from dynasor_sgl.router.table import Program

T = TypeVar("T")
# The same probe as `dynasor_sgl.lang.probe` (which imports SGLang's frontend, ten seconds the
# router does not spend); a unit test pins the two copies equal.
PROBE_SUFFIX = (
    "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"
)
PROBE_REGEX = r"[^{}]*(\{[^{}]*\}[^{}]*)*\}"
PROBE_MAX_TOKENS = 20


class ExitReason(StrEnum):
    CERTAIN = "certain"  # the probes agreed: the policy stopped the reasoning
    COMPLETED = "completed"  # the model ended its answer on its own
    BUDGET = "budget"  # the token budget ran out during reasoning; a final probe answered


@dataclass
class Outcome:
    """What a run produced. text: the model's own generation (reasoning, and its answer when
    it finished); appended: the answer the router added on exit (empty otherwise)."""

    budget: int
    text: str = ""
    appended: str = ""
    answer: str | None = None
    exit_reason: ExitReason = ExitReason.COMPLETED
    prompt_tokens: int = 0
    reasoning_tokens: int = 0
    probe_tokens: int = 0
    probe_prefill_tokens: int = 0
    trajectory: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content(self) -> str:
        return self.text + self.appended

    @property
    def completion_tokens(self) -> int:
        """Every token generated for the request: reasoning and probes (never hidden)."""
        return self.reasoning_tokens + self.probe_tokens

    @property
    def tokens_saved(self) -> int:
        """Estimate against the budget: an early exit saves what the budget left, less the
        probes; otherwise the model ran its own course and the probes were the cost."""
        baseline = self.budget if self.exit_reason is ExitReason.CERTAIN else self.reasoning_tokens
        return baseline - self.completion_tokens


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    finish: str
    prompt_tokens: int = 0


@dataclass(frozen=True)
class _Probe:
    answer: str | None
    text: str


def thinking_open(text: str) -> bool:
    """Whether `text` (prompt and reasoning) has a `<think>` that no `</think>` closed."""
    return text.rfind(THINK_OPEN) > text.rfind(THINK_CLOSE)


def answer_text(answer: str, close_think: bool) -> str:
    """The answer as the model would write it after its reasoning."""
    head = f"\n{THINK_CLOSE}\n\n" if close_think else "\n\n"
    return f"{head}**Final Answer**\n\n\\[ \\boxed{{{answer}}} \\]"


class CotRun:
    """One early-exit chain of thought. `on_text` receives the model's text as it streams."""

    def __init__(
        self,
        router: Router,
        prompt: str,
        plan: EarlyExit,
        budget: int,
        params: dict[str, Any],
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.router, self.prompt, self.plan, self.params = router, prompt, plan, params
        self.on_text = on_text
        self.out = Outcome(budget)
        self._answers: list[str | None] = []
        self._texts: list[str | None] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> Outcome:
        prog = self._register()
        try:
            await self._reason(prog)
            if self.out.exit_reason is ExitReason.BUDGET or not self.out.text.strip():
                probe = await self._probe(prog)
                self._append(probe.answer or probe.text.strip().rstrip("}").strip())
        finally:
            for task in self._tasks:
                task.cancel()
            answer = self.out.answer
            finish = lambda: self.router.programs.finish(prog, answer)  # noqa: E731
            await self.router.end_program(prog, finish, "finish")
        return self.out

    def _register(self) -> Program:
        step = min(self.plan.probe_interval, self.out.budget)
        knobs = {"cap": self.out.budget, "initial": step, "pace": step, "detect_at": step}
        knobs |= {"detect_every": step, "probe_window": self.plan.certainty_window}
        defaults = self.router.config.policy_defaults.get("cot", {})
        try:
            config = PolicyConfig.for_algorithm("cot", **{**defaults, **knobs})
        except ValueError as exc:
            raise bad_request(f"early exit: {exc}") from exc
        prog = self.router.programs.register(config, "chat-" + uuid.uuid4().hex[:16])
        self.router.metrics.programs_registered.inc()
        return prog

    async def _reason(self, prog: Program) -> None:
        chunk = self._spawn(self._chunk(prog))
        while True:
            piece = await chunk
            self._add(piece)
            if piece.finish != "length" or self.out.reasoning_tokens >= self.out.budget:
                ended = piece.finish != "length"
                self.out.exit_reason = ExitReason.COMPLETED if ended else ExitReason.BUDGET
                return
            probe = self._spawn(self._probe(prog))
            chunk = self._spawn(self._chunk(prog))
            result = await probe
            if await self._certain(prog, result):
                self._add(await chunk)  # the stop aborted it; what it had made stays
                self.out.exit_reason = ExitReason.CERTAIN
                self._append(result.answer or "")
                return

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _add(self, piece: _Piece) -> None:
        self.out.text += piece.text
        self.out.reasoning_tokens += piece.tokens
        self.out.prompt_tokens = self.out.prompt_tokens or piece.prompt_tokens

    def _append(self, answer: str) -> None:
        self.out.answer = answer or None
        if answer:
            close = thinking_open(self.prompt + self.out.text)
            self.out.appended = answer_text(answer, close)

    async def _certain(self, prog: Program, probe: _Probe) -> bool:
        """Report the probe to the policy; whether it stopped the program."""
        self._answers.append(probe.answer)
        self._texts.append(probe.text)
        report = Report(
            used=self.out.reasoning_tokens,
            probe_answers=list(self._answers),
            probe_texts=list(self._texts),
        )
        decision, _ = await self.router.report(prog, report)
        point = {"tokens": self.out.reasoning_tokens, "answer": probe.answer}
        self.out.trajectory.append({**point, **decision.values})
        return decision.action is Action.STOP

    async def _chunk(self, prog: Program) -> _Piece:
        left = self.out.budget - self.out.reasoning_tokens
        params = {**self.params, "max_new_tokens": min(self.plan.probe_interval, left)}
        body = {"text": self.prompt + self.out.text, "sampling_params": params, "stream": True}
        try:
            result = await self.router.forward(dialect.NATIVE, body, prog, "reason")
        except ApiError as exc:
            if exc.kind == "program_stopped":  # it was still waiting when the probes agreed
                return _Piece("", 0, "abort")
            raise
        if isinstance(result, Reply):
            raise bad_gateway(f"worker answered {result.status}: {result.body[:300]!r}")
        return await self._read(result)

    async def _read(self, stream: AsyncGenerator[bytes, None]) -> _Piece:
        """The text and token counts of a native stream (cumulative text per event)."""
        buf, seen = b"", ""
        meta: dict[str, Any] = {}
        try:
            async for raw in stream:
                buf += raw
                *events, buf = buf.split(b"\n\n")
                for event in events:
                    if not event.startswith(b"data: {"):
                        continue
                    data = orjson.loads(event[6:])
                    if "error" in data:
                        raise bad_gateway(f"worker failed mid-chunk: {data['error']}")
                    text = str(data.get("text", ""))
                    if len(text) > len(seen) and self.on_text is not None:
                        self.on_text(text[len(seen) :])
                    seen, meta = text, data.get("meta_info") or meta
        finally:
            await stream.aclose()
        reason = meta.get("finish_reason")
        finish = reason.get("type") if isinstance(reason, dict) else "stop"
        tokens, prompt = (
            int(meta.get("completion_tokens") or 0),
            int(meta.get("prompt_tokens") or 0),
        )
        return _Piece(seen, tokens, str(finish), prompt)

    async def _probe(self, prog: Program) -> _Probe:
        text = self.prompt + self.out.text + PROBE_SUFFIX
        params = {"max_new_tokens": PROBE_MAX_TOKENS, "temperature": 0.0, "regex": PROBE_REGEX}
        result = await self.router.forward(
            dialect.NATIVE, {"text": text, "sampling_params": params}, prog, "probe"
        )
        if not isinstance(result, Reply) or result.status != 200:
            status = result.status if isinstance(result, Reply) else "a stream"
            raise bad_gateway(f"a probe got {status} from the worker")
        data = result.json()
        meta = data.get("meta_info") or {}
        self.out.probe_tokens += int(meta.get("completion_tokens") or 0)
        prefill = int(meta.get("prompt_tokens") or 0) - int(meta.get("cached_tokens") or 0)
        self.out.probe_prefill_tokens += prefill
        probe_text = str(data.get("text", ""))
        return _Probe(extract_probe_answer(probe_text), probe_text)
