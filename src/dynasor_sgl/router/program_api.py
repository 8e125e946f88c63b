"""Program endpoints: register, report certaindex inputs and get the decision, finish, inspect.

pydantic lives here, at the HTTP boundary; everything behind it takes plain dataclasses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dynasor_sgl.policy.config import DEFAULTS, current_keys
from dynasor_sgl.policy.machine import Decision, PolicyConfig, Report
from dynasor_sgl.router.calibration import Calibration
from dynasor_sgl.router.core import Router
from dynasor_sgl.router.errors import bad_request

logger = logging.getLogger(__name__)

_MAX_ITEMS = 4096
# Every string a client can make the router keep is bounded: an answer (what a program
# returns; the equivalence check reads at most 1,000 characters of it as more than text), a
# probe's text, a branch id.
_MAX_ANSWER = 4096
_MAX_TEXT = 16384
_MAX_ID = 256
_Answer = Annotated[str, Field(max_length=_MAX_ANSWER)]
_Text = Annotated[str, Field(max_length=_MAX_TEXT)]
_Id = Annotated[str, Field(max_length=_MAX_ID)]
_PAGE = 1000  # programs per GET /programs page by default (at most MAX_PAGE)
_MAX_PAGE = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON has no inf or nan


class ProgramIn(_Strict):
    algorithm: str = Field("sc", description=f"one of {sorted(DEFAULTS)}")
    program_id: str | None = Field(
        None, max_length=_MAX_ID, description="your own id; default: a fresh one"
    )
    policy: dict[str, Any] = Field(
        default_factory=dict, description="PolicyConfig overrides, e.g. cap, thresholds"
    )
    deadline_s: float | None = Field(None, gt=0, le=1e7)
    task: str | None = Field(
        None,
        min_length=1,
        max_length=_MAX_ID,
        description="a tag of your own (e.g. a dataset's name): self-calibration keeps one "
        "stop rule per algorithm, served model, task and cap",
    )


class ReportIn(_Strict):
    used: int = Field(..., ge=0, le=1 << 30, description="knob units used so far")
    answers: dict[_Id, _Answer | None] = Field(default_factory=dict, max_length=_MAX_ITEMS)
    rewards: dict[_Id, float] = Field(default_factory=dict, max_length=_MAX_ITEMS)
    probe_answers: list[_Answer | None] = Field(default_factory=list, max_length=_MAX_ITEMS)
    probe_texts: list[_Text | None] = Field(default_factory=list, max_length=_MAX_ITEMS)
    top_logprobs: list[list[float]] = Field(default_factory=list, max_length=1 << 16)
    values: dict[_Id, float] = Field(default_factory=dict, max_length=64)
    slack: int | None = Field(
        None, ge=0, le=1 << 20, description="default: free capacity the router sees"
    )

    @model_validator(mode="before")
    @classmethod
    def _old_step_key(cls, data: Any) -> Any:
        """`step`, the old name of `used`, is still read (with a warning), alone only."""
        if isinstance(data, dict) and "step" in data and "used" not in data:
            logger.warning("report key 'step' is deprecated; use 'used'")
            data = {**data, "used": data["step"]}
            del data["step"]
        return data


class FinishIn(_Strict):
    answer: _Answer | None = None


def add_program_routes(app: FastAPI, router: Router, calibration: Calibration) -> None:
    table = router.programs

    @app.post("/programs", status_code=201)
    async def register(spec: ProgramIn) -> JSONResponse:
        """The policy: the algorithm's defaults, the router's, the client's; a program that
        self-calibrates gets the rule its key has learned, or explores to its cap."""
        config = _config(spec, router.config.policy_defaults.get(spec.algorithm, {}))
        assigned = await calibration.assign(config, current_keys(spec.policy), spec.task)
        if assigned is not None:
            config = assigned.config
        prog = table.register(config, spec.program_id, spec.deadline_s, assigned)
        router.metrics.programs_registered.inc()
        return JSONResponse({**prog.summary(), "config": config.to_dict()}, 201)

    @app.get("/programs")
    async def list_programs(
        status: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = _PAGE,
    ) -> JSONResponse:
        """A page of the program table (oldest first), with the total and the next page's
        offset (null on the last page)."""
        chosen = [p for p in table.all() if status is None or p.status == status]
        page = chosen[offset : offset + limit]
        after = offset + len(page)
        return JSONResponse(
            {
                "programs": [p.summary() for p in page],
                "total": len(chosen),
                "offset": offset,
                "limit": limit,
                "next_offset": after if after < len(chosen) else None,
            }
        )

    @app.get("/programs/{program_id}")
    async def show(program_id: str) -> JSONResponse:
        return JSONResponse(table.get(program_id).summary())

    @app.post("/programs/{program_id}/report")
    async def report(program_id: str, body: ReportIn) -> JSONResponse:
        prog = table.get(program_id)
        report = _report(body)
        try:
            decision, aborted = await router.report(prog, report, body.slack is None)
        except ValueError as exc:  # a value the policy's math rejects (e.g. reward > 1)
            raise bad_request(f"invalid report: {exc}") from exc
        await calibration.observe(prog, report, decision)
        return JSONResponse(_decision_json(program_id, decision, aborted, str(prog.status)))

    @app.post("/programs/{program_id}/finish")
    async def finish(program_id: str, body: FinishIn | None = None) -> JSONResponse:
        prog = table.get(program_id)
        answer = body.answer if body else None
        await router.end_program(prog, lambda: table.finish(prog, answer), "finish")
        return JSONResponse(prog.summary())

    @app.post("/programs/{program_id}/abort")
    async def abort(program_id: str) -> JSONResponse:
        prog = table.get(program_id)
        aborted = await router.end_program(prog, lambda: table.stop(prog, "aborted"), "client")
        return JSONResponse({**prog.summary(), "aborted": aborted})


def _config(spec: ProgramIn, defaults: Mapping[str, Any]) -> PolicyConfig:
    """The policy of a registration: the algorithm's defaults, the router's, then the client's."""
    try:
        overrides = {**current_keys(defaults), **current_keys(spec.policy)}
        return PolicyConfig.for_algorithm(spec.algorithm, **overrides)
    except (ValueError, TypeError, AttributeError) as exc:
        raise bad_request(f"invalid policy: {exc}") from exc


def _report(body: ReportIn) -> Report:
    """The policy's report of a body; no slack given = 0 here (the router fills in its own)."""
    data = body.model_dump()
    data["slack"] = data["slack"] or 0
    try:
        return Report(**data)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


def _decision_json(
    program_id: str, decision: Decision, aborted: int, status: str
) -> dict[str, Any]:
    """What a report answers: the decision, the requests it aborted, the program's status."""
    return {
        "program_id": program_id,
        "action": str(decision.action),
        "grant": decision.grant,
        "expand": decision.expand,
        "trim": list(decision.trim),
        "reason": None if decision.reason is None else str(decision.reason),
        "values": dict(decision.values),
        "aborted": aborted,
        "status": status,
    }
