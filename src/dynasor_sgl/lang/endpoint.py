"""`DynasorEndpoint`: SGLang's `RuntimeEndpoint` with every request tagged and accounted.

Each generation of a program goes to the router's `/programs/<id>/generate` with the branch in
the `X-Dynasor-Branch` header, so the router can stop the program or trim one branch in the
engine (a direct run posts to the SGLang worker's own `/generate`, where nothing is enforced).
The branch of a request is the name `tag()` gave its state, else the state's own SGLang id
(forks are branches of their own). The reply's `meta_info` is added to the program's token
ledger under the state's kind (reasoning, probe or reward), including the prefill-only request
that `fork(n > 1)` sends first (when it does: SGLang skips it if the parent's text has not been
built yet on its thread), which the stock endpoint leaves uncounted. Each reply's wall time
against the worker's own latency gives the request's wait outside the worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
from sglang.global_config import global_config
from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint
from sglang.lang.chat_template import get_chat_template, get_chat_template_by_model_path
from sglang.lang.interpreter import StreamExecutor
from sglang.lang.ir import SglSamplingParams

from dynasor_sgl.lang.client import RouterClient, check
from dynasor_sgl.lang.context import ProgramContext
from dynasor_sgl.lang.errors import BackendError, ProgramStopped
from dynasor_sgl.lang.tags import branch_of, kind_of
from dynasor_sgl.protocol import BRANCH_HEADER

logger = logging.getLogger(__name__)

_LOGPROB_FIELDS = (
    "return_logprob",
    "logprob_start_len",
    "top_logprobs_num",
    "return_text_in_logprobs",
)


def chat_template_for(model_path: str, name: str | None = None) -> Any:
    """The frontend chat template: `name` if given; SmolLM2 speaks ChatML, which SGLang's
    path matcher does not know; otherwise SGLang's own guess from the model path."""
    if name:
        return get_chat_template(name)
    if "smollm" in model_path.lower():
        return get_chat_template("chatml")
    return get_chat_template_by_model_path(model_path)


class DynasorEndpoint(RuntimeEndpoint):
    """A backend bound to one program run. Build it per run; `model_info` comes from the
    router once (the stock constructor would ask again for every program). `generate_url`
    replaces the router's program route (a direct run posts to `<worker>/generate`)."""

    def __init__(
        self,
        client: RouterClient,
        ctx: ProgramContext,
        model_info: dict[str, Any],
        chat_template: str | None = None,
        generate_url: str | None = None,
    ) -> None:
        # Deliberately not RuntimeEndpoint.__init__: it GETs /get_model_info on every build.
        self.support_concate_and_append = True
        self.base_url = client.url
        self.api_key = client.api_key
        self.verify = None
        self.model_info = model_info
        self.chat_template = chat_template_for(model_info.get("model_path", ""), chat_template)
        self.client = client
        self.ctx = ctx
        self.url = generate_url or f"{client.url}/programs/{ctx.program_id}/generate"
        self._warned_select = False

    def _body(self, s: StreamExecutor, sampling_params: SglSamplingParams) -> dict[str, Any]:
        """The request SGLang's RuntimeEndpoint would send for this gen."""
        self._handle_dtype_to_regex(sampling_params)
        data: dict[str, Any] = {
            "text": s.text_,
            "sampling_params": {
                "skip_special_tokens": global_config.skip_special_tokens_in_output,
                "spaces_between_special_tokens": global_config.spaces_between_special_tokens_in_out,
                **sampling_params.to_srt_kwargs(),
            },
        }
        for item in _LOGPROB_FIELDS:
            value = getattr(sampling_params, item, None)
            if value is not None:
                data[item] = value
        self._add_images(s, data)
        return data

    def _post(self, s: StreamExecutor, data: dict[str, Any]) -> dict[str, Any]:
        branch = branch_of(s)
        self.ctx.request_started()
        sent = time.monotonic()
        try:
            try:
                reply = self.client.generate_http.post(
                    self.url, json=data, headers={BRANCH_HEADER: branch}
                )
            except httpx.HTTPError as exc:
                raise BackendError(f"{self.client.url} unreachable: {exc}") from exc
            obj = check(reply)
            if not isinstance(obj, dict) or "meta_info" not in obj:
                raise BackendError(f"unexpected reply from /generate: {str(obj)[:200]}")
            self.ctx.account(kind_of(s), obj["meta_info"])
            self.ctx.note_wait(time.monotonic() - sent, obj["meta_info"])
            return obj
        except BackendError as exc:
            self._record(branch, exc)
            raise
        finally:
            self.ctx.request_ended()

    def _record(self, branch: str, exc: BackendError) -> None:
        # A 409 after the program was stopped or the branch trimmed is the decision at work.
        if not (isinstance(exc, ProgramStopped) and self.ctx.stopped) and exc.status != 409:
            self.ctx.record_error(branch, exc)

    def generate(self, s: StreamExecutor, sampling_params: SglSamplingParams) -> Any:
        obj = self._post(s, self._body(s, sampling_params))
        return obj["text"], obj["meta_info"]

    def commit_lazy_operations(self, s: StreamExecutor) -> None:
        data = {"text": s.text_, "sampling_params": {"max_new_tokens": 0}}
        self._add_images(s, data)
        self._post(s, data)

    def generate_stream(
        self, s: StreamExecutor, sampling_params: SglSamplingParams
    ) -> Iterator[Any]:
        data = {**self._body(s, sampling_params), "stream": True}
        branch = branch_of(s)
        meta: dict[str, Any] | None = None
        self.ctx.request_started()
        sent = time.monotonic()
        try:
            with self.client.generate_http.stream(
                "POST", self.url, json=data, headers={BRANCH_HEADER: branch}
            ) as reply:
                if not reply.is_success:
                    reply.read()
                    check(reply)
                pos = 0
                for line in reply.iter_lines():
                    if not line.startswith("data:") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[5:].strip())
                    if "error" in chunk:
                        raise BackendError.from_response(502, chunk, line)
                    text, meta = chunk["text"][pos:], chunk["meta_info"]
                    pos += len(text)
                    yield text, meta
        except httpx.HTTPError as exc:
            err = BackendError(f"{self.client.url} unreachable: {exc}")
            self._record(branch, err)
            raise err from exc
        except BackendError as exc:
            self._record(branch, exc)
            raise
        finally:
            self.ctx.account(kind_of(s), meta)  # each chunk repeats the totals: count the last
            self.ctx.note_wait(time.monotonic() - sent, meta)
            self.ctx.request_ended()

    def select(self, s: StreamExecutor, *args: Any, **kwargs: Any) -> Any:
        # SGLang's select sends a batch, which the router does not tag; it still works, but its
        # tokens are not attributed to the program. Programs here judge with a 1-token gen.
        if not self._warned_select:
            logger.warning(
                "program %s uses sgl.select: its tokens are not counted to the program",
                self.ctx.program_id,
            )
            self._warned_select = True
        return super().select(s, *args, **kwargs)
