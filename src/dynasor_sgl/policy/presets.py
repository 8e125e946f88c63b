"""Named sets of policy defaults a command can pick (`--preset cpu|paper`).

"paper" is `policy_config.DEFAULTS` as they are: the paper's GPU-scale caps. "cpu" is the
embedded model's: it lowers the caps and widths of the tree-search and reward programs so that
each shipped program answers a simple question on the embedded model on a 2-core CPU in about 2
minutes (docs/programs.md: "Presets"), and gives self-consistency the stop rule a label-free
calibration fitted on the embedded model's built-in tasks (below); CoT keeps its settings.
Pure data and one function.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from dynasor_sgl.policy.config import current_keys

PRESETS = ("cpu", "paper")
Preset = Literal["cpu", "paper"]
DEFAULT_PRESET: Preset = "cpu"
# A stop rule is one unit: a client's own thresholds or rule replace the preset's whole rule.
STOP_RULE_KEYS = ("rule", "confidence", "posterior_of", "thresholds")
CPU_PRESET: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # The label-free calibration (eps 0.02, delta 0.1) of the 400 recorded full-budget runs
        # of the built-in tasks synth:add1 (two seeds), synth:apples and synth:facts on the
        # embedded model with self-consistency's prompt as shipped (cap 20, 48 tokens):
        #   dynasor-sgl calibrate docs/results/sc-example/{add1,apples,facts,add1-seed1}.jsonl \
        #     --target full-budget --out docs/results/selfcal-defaults/builtin-policy.json
        # chose the full-budget posterior at 0.9, read at 5 and every 5 (the rest as shipped):
        # 37.9%, 15.1%, 18.8% and 32.9% of the four runs' tokens saved, 1 answer of 400 changed;
        # fitted on the other three runs only, add1-seed1 held out saves 32.9%, none changed
        # (docs/results/selfcal-defaults.md; a test keeps this entry equal to that file).
        "sc": {"rule": "posterior", "posterior_of": "full_budget", "confidence": 0.9},
        "bon": {"cap": 8},
        "beam": {"cap": 16},
        "rebase": {"cap": 8, "initial": 4, "pace": 4, "detect_at": 4},
        "mcts": {"cap": 8},
    }
)


def with_preset(preset: str, algorithm: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The PolicyConfig overrides that give `algorithm` the `preset`'s values with `overrides`
    on top (what a client sends the router). The preset's values are defaults: a `cap` in
    `overrides` below its `initial` or `detect_at` pulls those down, as in `for_algorithm`, and
    overrides that set a stop rule (`STOP_RULE_KEYS`: a --threshold, a policy file's rule)
    replace the preset's rule whole. An unknown preset is a ValueError."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    base = dict(CPU_PRESET.get(algorithm, {})) if preset == "cpu" else {}
    overrides = current_keys(overrides)
    if any(key in overrides for key in STOP_RULE_KEYS):
        base = {k: v for k, v in base.items() if k not in STOP_RULE_KEYS}
    cap = overrides.get("cap")
    if isinstance(cap, int) and cap >= 1:
        for name in ("initial", "detect_at"):
            if name in base and name not in overrides and base[name] > cap:
                base[name] = cap
    return {**base, **overrides}
