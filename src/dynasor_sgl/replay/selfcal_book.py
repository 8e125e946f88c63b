"""Self-calibration online, every key: the book a router keeps (and the simulator could).

Registrations ask it for their policy (`assign`), explored runs once replayed go in (`record`),
and it is shown (`view`) and kept across restarts (`to_json` / `from_json`). At most
`max_keys` keys; a registration past them keeps the router's defaults. One key's state and the
method are in `dynasor_sgl.replay.selfcal_key`. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay.engine import same_answer
from dynasor_sgl.replay.sampled import RecordedRun
from dynasor_sgl.replay.selfcal import Candidate
from dynasor_sgl.replay.selfcal_key import (
    CALIBRATED,
    Assignment,
    BookSettings,
    Explored,
    Key,
    KeyState,
    eligible,
    explore_run,
)


class CalibrationBook:
    """Every key's state. `assign` at registration, `record` when an explored run is scored."""

    FORMAT = 1

    def __init__(self, settings: BookSettings | None = None) -> None:
        self.settings = settings or BookSettings()
        self.keys: dict[str, KeyState] = {}

    def state(self, key: Key) -> KeyState | None:
        """The key's state, made on first use; None once `max_keys` keys exist."""
        state = self.keys.get(key.name)
        if state is None and len(self.keys) < self.settings.max_keys:
            state = self.keys[key.name] = KeyState(key, self.settings)
        return state

    def assign(
        self, key: Key, base: PolicyConfig, client_policy: Mapping[str, Any]
    ) -> Assignment | None:
        """The registration's assignment; None when it does not self-calibrate."""
        state = self.state(key) if eligible(key.algorithm, client_policy) else None
        return None if state is None else state.assign(base, client_policy)

    def record(self, key: Key, explored: Explored) -> None:
        state = self.state(key)
        if state is not None:
            state.add(explored)

    def view(self) -> dict[str, Any]:
        s = self.settings
        return {
            "explore": s.explore,
            "epsilon": s.epsilon,
            "delta": s.delta,
            "max_runs": s.max_runs,
            "calibrated_algorithms": list(CALIBRATED),
            "keys": [k.view() for k in self.keys.values()],
        }

    def to_json(self) -> dict[str, Any]:
        return {"format": self.FORMAT, "keys": [k.to_json() for k in self.keys.values()]}

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], settings: BookSettings | None = None
    ) -> CalibrationBook:
        """A book from `to_json`, refit under `settings` (its own ε and δ); a malformed one is a
        ValueError."""
        book = cls(settings)
        if data.get("format") != cls.FORMAT:
            raise ValueError(f"calibration format must be {cls.FORMAT}, got {data.get('format')!r}")
        try:
            for item in data["keys"][: book.settings.max_keys]:
                state = KeyState.from_json(item, book.settings)
                book.keys[state.key.name] = state
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed calibration state: {exc!r}") from exc
        return book


@dataclass(frozen=True)
class Served:
    """One program served through a book from its recorded full-budget run: the rule it got,
    its tokens, its answer and whether that differs from its full budget's."""

    program_id: str
    rule: str
    tokens: int
    answer: str | None
    disagrees: bool


def serve_recorded(
    book: CalibrationBook, key: Key, base: PolicyConfig, runs: Sequence[RecordedRun]
) -> list[Served]:
    """Serves `runs` in order through `book` (what a router does, each explored run recorded
    before the next program registers): an explored program draws its whole run, any other
    stops where its rule stops on its recorded samples."""
    out = []
    for run in runs:
        assigned = book.assign(key, base, {})
        if assigned is None:
            raise ValueError(f"{key.name} does not self-calibrate")
        full = run.full_answer()
        if assigned.explored:
            state = book.state(key)
            assert state is not None  # assign made it
            book.record(key, explore_run(run, assigned.in_force, state.families))
            answer, tokens = full, run.run.tokens_at(len(run.run.answers))
        else:
            outcome = Candidate(assigned.rule, assigned.config).outcome(run)
            answer, tokens = outcome.answer, outcome.tokens
        disagrees = not same_answer(answer, full)
        out.append(Served(run.question_id, assigned.rule, tokens, answer, disagrees))
    return out
