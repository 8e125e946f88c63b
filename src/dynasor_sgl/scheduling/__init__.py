"""Program scheduling: the order in which ready programs (and plain requests) go to a worker.

A plain state machine (add / enqueue / next / on_report / on_finish / detach / attach) over
programs and their ready requests, driven by the caller's clock (`now` in seconds, any monotone
origin). The router maps its output onto its admission queue and SGLang's per-request
`priority`; the simulator drives the same class. No I/O, no clock, no knowledge of HTTP, SGLang
or the policy. Knob units are what a program's policy counts (SC: samples, CoT: tokens, ...).

Policies (`Order`):
- fcfs: requests in the order they became ready, one at a time (no gang).
- fifo: programs in arrival order; a program's ready requests go out together (a gang):
  Parrot's App-FIFO.
- sjf: approximate shortest-job-first with aging, gang (the Dynasor paper's order). Score
  (lower first) = min(remaining units × tokens per unit, work_cap) − aging_rate × waited,
  where tokens per unit is the program's own average so far, before its first report the
  running average of its algorithm (seeded from `PRIOR_TOKENS_PER_UNIT`).
- plas: program-level least attained service (Autellix, arXiv 2502.13965 §4.2.1), gang, no
  prediction. Score (lower first) = min(tokens its completed requests generated, work_cap) −
  aging_rate × waited: a program that has been served least goes first; the clamp and aging
  give it the same starvation bound as sjf (Autellix promotes long-waiting programs instead).
- deadline: least slack first among programs that can still make their deadline, gang. Slack =
  deadline − now − predicted time, predicted time = remaining units × the program's own seconds
  per unit so far (before its first report: predicted work / `prior_token_rate`). A program
  without a deadline is due `starvation_bound_s` after it became ready. Programs that can no
  longer make it go after those that can, by SJF score, except one that has waited longer than
  `starvation_bound_s`, which goes first.

Every key above is time-invariant (aging shifts every SJF or PLAS score by the same
−aging_rate × now), so ready programs sit in a heap: add, enqueue, next and on_report are
O(log P).

Starvation bound. Let B = starvation_bound_s, a = aging_rate, work_cap = a·B. Under sjf (and
plas, whose attained service is clamped the same way) a
program P ready from t0 has score ≤ a·B − a·(now − t0); a program Q that becomes ready after
t0 + B has score ≥ −a·(now − t_Q) > a·B − a·(now − t0) ≥ P's. So if the caller dispatches at
least every d seconds while anything is ready, P is dispatched by t0 + B + (N + 1)·d, N = the
programs ready at t0 + B (each dispatched at most once before P). Under deadline the same holds
through the late queue's escape; fifo and fcfs never starve.
"""

from dynasor_sgl.scheduling.config import (
    PRIOR_TOKENS_PER_UNIT,
    Order,
    SchedulerConfig,
)
from dynasor_sgl.scheduling.scheduler import Scheduler
from dynasor_sgl.scheduling.state import Dispatch, ProgramState

__all__ = [
    "PRIOR_TOKENS_PER_UNIT",
    "Dispatch",
    "Order",
    "ProgramState",
    "Scheduler",
    "SchedulerConfig",
]
