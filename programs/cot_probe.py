"""Chain of thought with Certaindex probing (Dynasor-CoT).

Knob: reasoning tokens. The program reasons in chunks of `pace` tokens (the policy's pace,
default 64). After each chunk it probes: a fork of the reasoning asks for the answer right away
(`dynasor_sgl.lang.start_probe`) while the next chunk already runs. The probe answers go to the
router; when the last `probe_window` (3) agree and none hesitates, the router stops the program,
aborts the chunk in flight, and the probe's answer is the final answer. Otherwise the program
runs until the model ends its reasoning or the token cap; then a last probe supplies the answer
if the reasoning has none.
"""

from __future__ import annotations

from typing import Any

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.lang import extract_answer

from .steps import SYSTEM


def probed_or_read(probed: str | None, reasoning: str) -> str | None:
    """The final answer of a reasoning that ended without a box: the last probe's, else what
    the reasoning itself says ("The capital of France is Paris."), never None when it says one."""
    return probed if probed is not None else extract_answer(reasoning)


def _chunk(s: Any, k: int, tokens: int, temperature: float) -> str:
    name = f"c{k}"
    s += sgl.gen(name, max_tokens=tokens, temperature=temperature)
    return name


@sgl.function
def cot_probe(s, question, temperature=0.6, system_prompt=None, few_shot=()):
    dl.open_chat(s, question, system_prompt or SYSTEM, few_shot)
    ctx = dl.context(s)
    pace, cap = ctx.config.pace, ctx.config.cap
    used, reasoning = 0, ""
    probe_answers: list[str | None] = []
    probe_texts: list[str] = []
    probe_prefill: list[int] = []
    name = _chunk(s, 0, min(pace, cap), temperature)
    while True:
        reasoning += str(dl.read(s, name))
        used += int(dl.meta(s, name).get("completion_tokens") or 0)
        if dl.finish_reason(s, name) != "length" or used >= cap:
            break  # the model ended its reasoning, or the budget is spent
        probe = dl.start_probe(s)
        name = _chunk(s, len(probe_answers) + 1, min(pace, cap - used), temperature)
        result = probe.result()
        probe_answers.append(result.answer)
        probe_texts.append(result.text)
        probe_prefill.append(result.prefill)
        verdict = ctx.report(used, probe_answers=probe_answers, probe_texts=probe_texts)
        if verdict.stop:
            ctx.finish(result.answer, probe_answers=probe_answers, probe_prefill=probe_prefill)
            return
    answer = extract_answer(reasoning) if "boxed" in reasoning else None
    if answer is None:  # the reasoning ended without a boxed answer: ask for it
        final = dl.start_probe(s).result()
        answer = probed_or_read(final.answer, reasoning)
        probe_prefill.append(final.prefill)
    ctx.finish(
        answer,
        exit_reason="cap" if used >= cap else "completed",
        steps=used,
        probe_answers=probe_answers,
        probe_prefill=probe_prefill,
    )


SPEC = dl.ProgramSpec(
    name="cot-probe",
    algorithm="cot",
    function=cot_probe,
    knob="tokens",
    signal="consistency",
    description="chain of thought, probed every `pace` tokens; stop when the probes agree",
)
