"""Reward sources for tree search and best-of-N: how good is this partial or final solution?

A `RewardSource` scores program states in [0, 1]. `SelfJudge` (the default) asks the policy model
itself whether the text so far is correct and reads P("Yes") from the next-token logprobs of a
1-token generation on a fork: real, cheap, and it runs on the CPU worker. `RemoteJudge` asks a
separate SGLang server (a reward or verifier model behind its native /generate) the same way.
Both account their tokens as "reward" in the program's ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import sglang as sgl
from sglang.lang.interpreter import ProgramState

from dynasor_sgl.lang.client import check
from dynasor_sgl.lang.context import RewardSource
from dynasor_sgl.lang.errors import BackendError
from dynasor_sgl.lang.state import context, discard, meta, tag
from dynasor_sgl.policy.logprobs import top_logprobs_by_text, yes_probability

__all__ = ["RemoteJudge", "RewardSource", "SelfJudge"]

JUDGE_PROMPT = "\n\nIs the solution above correct so far? Answer Yes or No.\nAnswer:"
TOP_K = 20


def _p_yes(info: dict[str, Any]) -> float:
    top = info.get("output_top_logprobs") or [None]
    return yes_probability(top_logprobs_by_text(top[0]))


class SelfJudge:
    """The policy model judges its own text: P("Yes") after `prompt`, on a discarded fork."""

    def __init__(self, prompt: str = JUDGE_PROMPT, top_k: int = TOP_K) -> None:
        self.prompt = prompt
        self.top_k = top_k

    def score(self, states: Sequence[ProgramState]) -> list[float]:
        forks = []
        for state in states:
            fork = state.fork(1)[0]
            tag(fork, "judge", "reward")
            fork += self.prompt + sgl.gen(
                "judge",
                max_tokens=1,
                temperature=0.0,
                return_logprob=True,
                top_logprobs_num=self.top_k,
                return_text_in_logprobs=True,
                logprob_start_len=-1,
            )
            forks.append(fork)
        try:
            return [_p_yes(meta(fork, "judge")) for fork in forks]
        finally:
            for fork in forks:
                discard(fork)


class RemoteJudge:
    """A separate SGLang server (e.g. a verifier model) answers the same Yes/No question.

    url: that server's base URL. Its tokens count as "reward" for the program, but its engine is
    not behind our router, so the router's per-program total does not include them.
    """

    def __init__(
        self,
        url: str,
        prompt: str = JUDGE_PROMPT,
        top_k: int = TOP_K,
        api_key: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.prompt = prompt
        self.top_k = top_k
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(headers=headers, timeout=timeout_s)

    def _one(self, state: ProgramState) -> float:
        body = {
            "text": state.text() + self.prompt,
            "sampling_params": {"max_new_tokens": 1, "temperature": 0.0},
            "return_logprob": True,
            "top_logprobs_num": self.top_k,
            "return_text_in_logprobs": True,
            "logprob_start_len": -1,
        }
        try:
            obj = check(self.http.post(self.url + "/generate", json=body))
        except httpx.HTTPError as exc:
            raise BackendError(f"reward server {self.url} unreachable: {exc}") from exc
        info = obj["meta_info"]
        context(state).account("reward", info)
        return _p_yes(info)

    def score(self, states: Sequence[ProgramState]) -> list[float]:
        if not states:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(states))) as pool:
            return list(pool.map(self._one, states))
