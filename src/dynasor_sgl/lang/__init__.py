"""The frontend side of dynasor-sgl: the Certaindex primitive for `@sgl.function` programs.

Inside a program: `ctx = context(s)` gives the run's policy and `ctx.report(...)` the router's
decision for the branches' answers/rewards; `start_probe(s)` is the chain-of-thought probe;
`tag`, `read`, `meta` name branches and read their results safely; `ctx.reward` scores states;
`open_chat` starts the chat from a system prompt and few-shot examples (`read_few_shot`).
Outside: `run_program(name_or_spec, question, router=URL)` runs a program, tagged and accounted,
and returns a `ProgramResult` (`worker=URL` instead runs it straight against an SGLang worker,
the policy decided in this process). Knows nothing about how the router decides (see `policy`).

This is the surface for program authors: a user's `@sgl.function` program imports from here
only (the primitive, answers, votes, the tree search builds, token counts, the spec), so moves
inside the package never break it. Programs are found by name through `registry`.
"""

from dynasor_sgl.answers.equivalence import extract_answer
from dynasor_sgl.lang.client import DEFAULT_ROUTER, RouterClient
from dynasor_sgl.lang.context import ProgramContext, Verdict
from dynasor_sgl.lang.endpoint import DynasorEndpoint
from dynasor_sgl.lang.errors import BackendError, BranchFailed, BranchTrimmed, ProgramStopped
from dynasor_sgl.lang.probe import PROBE_SUFFIX, Probe, ProbeResult, start_probe
from dynasor_sgl.lang.prompt import open_chat, read_few_shot
from dynasor_sgl.lang.registry import find_program
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
from dynasor_sgl.lang.threads import install as _install_thread_fix
from dynasor_sgl.lang.tokens import request_tokens
from dynasor_sgl.policy.logprobs import position_confidence, top_logprob_values
from dynasor_sgl.search.tree import (
    DEFAULT_EXPLORATION,
    Node,
    add_child,
    backpropagate,
    iter_nodes,
    path_text,
    select_path,
    terminals,
)
from dynasor_sgl.search.votes import (
    Vote,
    beam_select,
    best_of_n,
    majority_vote,
    rebase_allocation,
    weighted_vote,
)

__all__ = [
    "DEFAULT_EXPLORATION",
    "DEFAULT_ROUTER",
    "EXIT_REASONS",
    "PROBE_SUFFIX",
    "BackendError",
    "BranchFailed",
    "BranchTrimmed",
    "DynasorEndpoint",
    "Node",
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
    "Vote",
    "add_child",
    "backpropagate",
    "beam_select",
    "best_of_n",
    "branch",
    "context",
    "discard",
    "error",
    "extract_answer",
    "find_program",
    "finish_reason",
    "fork",
    "iter_nodes",
    "majority_vote",
    "meta",
    "open_chat",
    "path_text",
    "position_confidence",
    "read",
    "read_few_shot",
    "rebase_allocation",
    "request_tokens",
    "run_program",
    "select_path",
    "start_probe",
    "tag",
    "terminals",
    "top_logprob_values",
    "weighted_vote",
]

_install_thread_fix()  # see dynasor_sgl.lang.threads
