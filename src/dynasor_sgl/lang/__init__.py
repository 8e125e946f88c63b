"""The frontend side of dynasor-sgl: the Certaindex primitive for `@sgl.function` programs.

Inside a program: `ctx = context(s)` gives the run's policy and `ctx.report(...)` the router's
decision for the branches' answers/rewards; `start_probe(s)` is the chain-of-thought probe;
`tag`, `read`, `meta` name branches and read their results safely; `ctx.reward` scores states;
`open_chat` starts the chat from a system prompt and few-shot examples (`read_few_shot`).
Outside: `run_program(name_or_spec, question, router=URL)` runs a program, tagged and accounted,
and returns a `ProgramResult` (`worker=URL` instead runs it straight against an SGLang worker,
the policy decided in this process). Knows nothing about how the router decides (see `policy`).
"""

from dynasor_sgl.lang.client import DEFAULT_ROUTER, RouterClient
from dynasor_sgl.lang.context import ProgramContext, Verdict
from dynasor_sgl.lang.endpoint import DynasorEndpoint
from dynasor_sgl.lang.errors import BackendError, BranchFailed, BranchTrimmed, ProgramStopped
from dynasor_sgl.lang.probe import PROBE_SUFFIX, Probe, ProbeResult, start_probe
from dynasor_sgl.lang.prompt import open_chat, read_few_shot
from dynasor_sgl.lang.reward import RemoteJudge, RewardSource, SelfJudge
from dynasor_sgl.lang.run import run_program
from dynasor_sgl.lang.spec import EXIT_REASONS, ProgramResult, ProgramSpec
from dynasor_sgl.lang.state import (
    branch,
    context,
    discard,
    error,
    finish_reason,
    fork,
    meta,
    read,
    tag,
)

__all__ = [
    "DEFAULT_ROUTER",
    "EXIT_REASONS",
    "PROBE_SUFFIX",
    "BackendError",
    "BranchFailed",
    "BranchTrimmed",
    "DynasorEndpoint",
    "Probe",
    "ProbeResult",
    "ProgramContext",
    "ProgramResult",
    "ProgramSpec",
    "ProgramStopped",
    "RemoteJudge",
    "RewardSource",
    "RouterClient",
    "SelfJudge",
    "Verdict",
    "branch",
    "context",
    "discard",
    "error",
    "finish_reason",
    "fork",
    "meta",
    "open_chat",
    "read",
    "read_few_shot",
    "run_program",
    "start_probe",
    "tag",
]
