"""The chain-of-thought Certaindex probe: ask for the answer now, without disturbing the reasoning.

`start_probe(s)` forks the reasoning state, appends the probe suffix (which opens `\\boxed{`) and
queues a short generation on the fork; the caller then queues its next reasoning chunk on `s`,
so the two run concurrently, and reads the probe with `Probe.result()`. The fork shares the whole
reasoning prefix, so its prefill comes from the worker's prefix cache (only the suffix is new;
`ProbeResult.prefill` says how much was not cached). The fork is discarded after the read.

The probe stops at the brace that closes `\\boxed{`: a regex constraint (one level of nesting,
e.g. `\\frac{1}{2}`) ends the generation there and, unlike a stop string, keeps the brace, so the
answer is never cut. Probe tokens are accounted as "probe".
"""

from __future__ import annotations

from dataclasses import dataclass

import sglang as sgl
from sglang.lang.interpreter import ProgramState

from dynasor_sgl.answers.equivalence import extract_probe_answer
from dynasor_sgl.lang.state import discard, meta, read, tag

PROBE_SUFFIX = (
    "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"
)
# Text up to and including the brace that closes the open \boxed{, allowing one nested level.
PROBE_REGEX = r"[^{}]*(\{[^{}]*\}[^{}]*)*\}"
PROBE_MAX_TOKENS = 20


@dataclass(frozen=True)
class ProbeResult:
    """answer: the extracted answer, None if the probe did not close the box. text: the raw
    probe output. prompt_tokens / cached_tokens / completion_tokens: from the worker."""

    answer: str | None
    text: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int

    @property
    def prefill(self) -> int:
        """Probe prompt tokens the worker had to compute (not served by the prefix cache)."""
        return self.prompt_tokens - self.cached_tokens


class Probe:
    """A probe in flight on its own fork of the reasoning state."""

    def __init__(self, fork: ProgramState, name: str) -> None:
        self.fork = fork
        self.name = name

    def result(self) -> ProbeResult:
        """Wait for the probe, extract its answer and discard the fork."""
        try:
            text = str(read(self.fork, self.name))
            info = meta(self.fork, self.name)
        finally:
            discard(self.fork)
        return ProbeResult(
            answer=extract_probe_answer(text),
            text=text,
            prompt_tokens=int(info.get("prompt_tokens") or 0),
            cached_tokens=int(info.get("cached_tokens") or 0),
            completion_tokens=int(info.get("completion_tokens") or 0),
        )


def start_probe(
    s: ProgramState,
    *,
    max_tokens: int = PROBE_MAX_TOKENS,
    suffix: str = PROBE_SUFFIX,
    regex: str | None = PROBE_REGEX,
    branch: str = "probe",
) -> Probe:
    """Fork `s` (waits for the work already queued on it), queue the probe on the fork, return.

    Queue the next reasoning chunk on `s` before calling `result()` to overlap the two.
    regex=None drops the constraint (the probe then runs its full `max_tokens`).
    """
    fork = s.fork(1)[0]
    tag(fork, branch, "probe")
    fork += suffix + sgl.gen("probe", max_tokens=max_tokens, temperature=0.0, regex=regex)
    return Probe(fork, "probe")
