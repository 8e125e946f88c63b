"""What early exit an OpenAI chat request asks for: the `dynasor` body field, `reasoning_effort`
and the effort table, in one place.

| reasoning_effort | certainty_window | probe_interval | Dynasor preset |
|------------------|------------------|----------------|----------------|
| low              | 2                | 32             | crazy          |
| medium           | 3                | 64             | mid            |
| high             | 5                | 64             | low            |
| mild             | 8                | 64             | mild           |
| mid              | 3                | 64             | mid            |
| crazy            | 2                | 32             | crazy          |
| none, max        | early exit off   |                |                |

OpenAI's words mean compute: low effort exits soonest. Dynasor's own presets name savings, so
its "low" and "high" mean the opposite; only its unambiguous names (mild, mid, crazy) are taken
as they are. `dynasor: {"probe_interval": N, "certainty_window": W}` (what the OpenAI SDK sends
for `extra_body`) wins over the effort, field by field; `probe_interval: 0` turns early exit off.
A request that names neither gets the router's default (off unless set). Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynasor_sgl.router.errors import bad_request

MAX_INTERVAL = 4096
MAX_WINDOW = 64


@dataclass(frozen=True)
class EarlyExit:
    """probe_interval: reasoning tokens between probes (1..MAX_INTERVAL).
    certainty_window: consecutive agreeing, unhesitating probes needed to exit (1..MAX_WINDOW).
    """

    probe_interval: int = 64
    certainty_window: int = 3

    def __post_init__(self) -> None:
        for name, high in (("probe_interval", MAX_INTERVAL), ("certainty_window", MAX_WINDOW)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"dynasor.{name} must be an integer in [1, {high}], got {value!r}")


EFFORTS: dict[str, EarlyExit | None] = {
    "low": EarlyExit(32, 2),
    "medium": EarlyExit(64, 3),
    "high": EarlyExit(64, 5),
    "mild": EarlyExit(64, 8),
    "mid": EarlyExit(64, 3),
    "crazy": EarlyExit(32, 2),
    "none": None,
    "max": None,
}
DEFAULT = EarlyExit(64, 3)  # "medium": the base a `dynasor` field without an effort refines
_FIELDS = ("probe_interval", "certainty_window")


def check_effort(effort: Any) -> None:
    """Raise ValueError unless `effort` is a name in EFFORTS."""
    if effort not in EFFORTS:
        raise ValueError(f"reasoning_effort must be one of {sorted(EFFORTS)}, got {effort!r}")


def plan_of(body: dict[str, Any], default_effort: str | None = None) -> EarlyExit | None:
    """The early exit a chat body asks for, or None (forward it as it is). Bad values are 400s."""
    effort = body.get("reasoning_effort")
    if effort is not None:
        try:
            check_effort(effort)
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
    settings = body.get("dynasor")
    if settings is None:
        name = effort if effort is not None else default_effort
        return EFFORTS[name] if name is not None else None
    if not isinstance(settings, dict):
        raise bad_request("dynasor must be an object like {probe_interval, certainty_window}")
    unknown = sorted(set(settings) - set(_FIELDS))
    if unknown:
        raise bad_request(f"unknown dynasor field(s): {', '.join(unknown)}")
    if settings.get("probe_interval") == 0:
        return None
    base = EFFORTS.get(effort or "") or DEFAULT
    merged = {name: settings.get(name, getattr(base, name)) for name in _FIELDS}
    try:
        return EarlyExit(**merged)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
