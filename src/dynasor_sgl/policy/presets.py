"""Named sets of policy defaults a command can pick (`--preset cpu|paper`).

"paper" is `policy_config.DEFAULTS` as they are: the paper's GPU-scale caps. "cpu" lowers the
caps and widths of the tree-search and reward programs so that each shipped program answers a
simple question on the embedded model on a 2-core CPU in about 2 minutes (README: "Presets");
self-consistency and CoT keep their settings. Pure data and one function.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from dynasor_sgl.policy.config import current_keys

PRESETS = ("cpu", "paper")
Preset = Literal["cpu", "paper"]
DEFAULT_PRESET: Preset = "cpu"
CPU_PRESET: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "bon": {"cap": 8},
        "beam": {"cap": 16},
        "rebase": {"cap": 8, "initial": 4, "pace": 4, "detect_at": 4},
        "mcts": {"cap": 8},
    }
)


def with_preset(preset: str, algorithm: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The PolicyConfig overrides that give `algorithm` the `preset`'s values with `overrides`
    on top (what a client sends the router). The preset's values are defaults: a `cap` in
    `overrides` below its `initial` or `detect_at` pulls those down, as in `for_algorithm`.
    An unknown preset is a ValueError."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    base = dict(CPU_PRESET.get(algorithm, {})) if preset == "cpu" else {}
    overrides = current_keys(overrides)
    cap = overrides.get("cap")
    if isinstance(cap, int) and cap >= 1:
        for name in ("initial", "detect_at"):
            if name in base and name not in overrides and base[name] > cap:
                base[name] = cap
    return {**base, **overrides}
