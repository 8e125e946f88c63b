"""Engine profiles: how long one engine step takes, and the engine's limits, as a JSON file.

A step decodes one token for each of B running requests or prefills P prompt tokens (both
at once only with `mixed_chunk`); it takes `step_s(B, P) = base_s + per_request_s·B +
per_prefill_token_s·P`, a linear model fitted by least squares (`fit_step_model`) to measured
(B, P, seconds) points; with `prefill_base_s` a step that prefills has a fixed cost of its
own in place of `base_s`, and `per_new_request_s` more for each request it admits
(`fit_split_step_model` fits decode and prefill points apart; `sim.steps.fit_steps` fits all
of it to the steps a real worker ran, its step trace). A B² term fitted to the CPU worker's
points was tried against the real online runs and rejected, and so was a term in the tokens
of context (14 µs a token, small against a decoding request's 6-10 ms). Every profile names
where each number comes from (`source`): a measurement on a real worker, a published figure,
or a provisional guess. Pure except `load_profile` / `save_profile`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dynasor_sgl.plain import from_plain, read_json_object

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """One engine (an SGLang worker on one device) as the simulator models it.

    name: a label. base_s / per_request_s / per_prefill_token_s: the step-time model above (s).
    kv_tokens: KV pool size in tokens (SGLang's --max-total-tokens). prefill_budget: prompt
    tokens prefilled per step at most (--chunked-prefill-size). max_running: requests running
    at once at most (--max-running-requests). request_overhead_s: seconds each request spends
    outside the engine (client, HTTP; both ways, counted before it arrives).
    router_overhead_s: seconds more each request spends on its way when a router is in front.
    router_cpu_s: step seconds each admitted request costs more behind a router (a router
    sharing the worker's CPU takes it away; 0 when the router has cores of its own).
    per_new_request_s: seconds a step takes longer for each request it admits (the engine's
    per-request work: scheduling, tokenizing, detokenizing; on a shared CPU also the serving
    stack's own work per request). router_bound: the routers' in-flight bound per worker on
    this engine, its throughput knee (None: the router's default, 12, set for the CPU worker).
    mixed_chunk: a step prefills and decodes together (SGLang's --enable-mixed-chunk); False,
    SGLang's default: a step with prefill to do is a prefill step alone and the running
    requests wait it out (its `get_next_batch_to_run` runs a new prefill batch first).
    prefill_base_s: the fixed seconds of a step that prefills, in place of base_s (None: base_s).
    source: for each number, where it comes from.
    """

    name: str
    base_s: float
    per_request_s: float
    per_prefill_token_s: float
    kv_tokens: int = 65536
    prefill_budget: int = 8192
    max_running: int = 4096
    request_overhead_s: float = 0.0
    router_overhead_s: float = 0.0
    router_cpu_s: float = 0.0
    per_new_request_s: float = 0.0
    router_bound: int | None = None
    mixed_chunk: bool = False
    prefill_base_s: float | None = None
    source: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "base_s",
            "per_request_s",
            "per_prefill_token_s",
            "request_overhead_s",
            "router_overhead_s",
            "router_cpu_s",
            "per_new_request_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.base_s + self.per_request_s <= 0:
            raise ValueError("a decode step must take time: base_s + per_request_s > 0")
        if self.prefill_base_s is not None and (
            not isinstance(self.prefill_base_s, int | float) or self.prefill_base_s < 0
        ):
            raise ValueError(f"prefill_base_s must be a number >= 0, got {self.prefill_base_s!r}")
        if not isinstance(self.mixed_chunk, bool):
            raise ValueError(f"mixed_chunk must be true or false, got {self.mixed_chunk!r}")
        if self.router_bound is not None and (
            not isinstance(self.router_bound, int) or self.router_bound < 1
        ):
            raise ValueError(f"router_bound must be an integer >= 1, got {self.router_bound!r}")
        for name in ("kv_tokens", "prefill_budget", "max_running"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")

    def step_s(self, batch: int, prefill_tokens: int, admitted: int = 0) -> float:
        """Seconds of one step decoding `batch` requests, prefilling `prefill_tokens` and
        admitting `admitted` new requests."""
        base = self.base_s
        if prefill_tokens and self.prefill_base_s is not None:
            base = self.prefill_base_s
        return (
            base
            + self.per_request_s * batch
            + self.per_prefill_token_s * prefill_tokens
            + self.per_new_request_s * admitted
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """A profile from plain data; unknown keys are a ValueError."""
        return from_plain(cls, data, "profile")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["source"] = dict(self.source)
        return data


def fit_step_model(points: Sequence[tuple[int, int, float]]) -> tuple[float, float, float]:
    """Least-squares (base_s, per_request_s, per_prefill_token_s) for (B, P, seconds) points.

    Coefficients are clipped at 0 (a negative cost is noise); columns with no variation (e.g.
    no prefill measured: P all 0) get 0 and are left out of the fit. Needs >= 1 point.
    """
    if not points:
        raise ValueError("fitting a step model needs at least one point")
    x = np.array([[1.0, b, p] for b, p, _ in points])
    y = np.array([t for _, _, t in points])
    used = [0] + [j for j in (1, 2) if np.ptp(x[:, j]) > 0]
    coef, *_ = np.linalg.lstsq(x[:, used], y, rcond=None)
    out = [0.0, 0.0, 0.0]
    for j, c in zip(used, coef, strict=True):
        out[j] = max(0.0, float(c))
    return out[0], out[1], out[2]


def fit_split_step_model(
    points: Sequence[tuple[int, int, float]],
) -> tuple[float, float, float, float]:
    """(base_s, per_request_s, prefill_base_s, per_prefill_token_s): least squares over the
    decode points (P = 0) and, apart, over the prefill points (B = 0), each `fit_step_model`.
    Needs both kinds of point, else ValueError."""
    decode = [(b, 0, t) for b, p, t in points if p == 0]
    prefill = [(0, p, t) for b, p, t in points if b == 0 and p > 0]
    if not decode or not prefill:
        raise ValueError("a split fit needs decode points (P = 0) and prefill points (B = 0)")
    base, per_request, _ = fit_step_model(decode)
    prefill_base, _, per_token = fit_step_model(prefill)
    return base, per_request, prefill_base, per_token


def load_profile(path: str | Path) -> Profile:
    """A profile file; a missing file, bad JSON or a bad value is a ValueError naming it."""
    data = read_json_object(path, "profile")
    try:
        return Profile.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"profile {path}: {exc}") from exc


def save_profile(profile: Profile, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(profile.to_dict(), indent=2) + "\n")
    logger.info("wrote profile %s to %s", profile.name, path)
