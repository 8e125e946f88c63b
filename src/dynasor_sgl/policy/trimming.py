"""Confidence trimming (DeepConf online): the sliding group confidence of one branch, the
threshold a program's warm-up branches set, and the decision to cut a branch short.

Pure and clock-free: tokens' confidences go in (`logprobs.position_confidence` of each
generated position), decisions come out. The router feeds it as a branch's tokens stream in and
carries the aborts out; it knows nothing about HTTP, SGLang or time.

Definitions (DeepConf, arXiv 2508.15260, §3–4):
- token confidence c_t = −mean of the position's top-k logprobs (high = sure);
- group confidence of a branch after token t: the mean of c over its last `window` tokens,
  defined once `window` tokens exist;
- a branch's lowest group confidence: the least group confidence over its sliding windows, or
  the mean of all its tokens when it has fewer than `window` (DeepConf's reference code);
- threshold s: from the lowest group confidences of the first `warmup` branches that finished
  (not aborted, with at least one token), s = the (100 − η)-th percentile of them (numpy's
  linear interpolation), where η = `percentile` is the share of warm-up branches, in percent,
  whose lowest group confidence is at or above s: η = 10 is DeepConf-low (aggressive, keeps
  the top 10%), η = 90 DeepConf-high (conservative). TensorRT-LLM's `confidence_percentile`
  means the same η;
- trim: once s is set, a branch whose current group confidence is below s is cut; warm-up
  branches finish before s exists, so they are never cut, and a branch shorter than `window`
  is never cut (it has no group yet).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


def group_confidences(confidences: Sequence[float], window: int) -> list[float]:
    """The group confidence after each token from the `window`-th on (mean of the last
    `window` token confidences); [] when there are fewer than `window` tokens."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    if len(confidences) < window:
        return []
    means = np.convolve(np.asarray(confidences, dtype=float), np.ones(window) / window, "valid")
    return [float(x) for x in means]


def lowest_group_confidence(confidences: Sequence[float], window: int) -> float | None:
    """The least group confidence of a branch; the mean of all its tokens when it has fewer
    than `window`; None for no tokens."""
    if not confidences:
        return None
    groups = group_confidences(confidences, window)
    return min(groups) if groups else math.fsum(confidences) / len(confidences)


def warmup_threshold(lowest: Sequence[float], percentile: float) -> float:
    """s = the (100 − percentile)-th percentile of the warm-up branches' lowest group
    confidences (numpy, linear interpolation). percentile in (0, 100]; `lowest` non-empty.
    E.g. lowest = [1, 2, 3, 4, 5]: percentile 10 -> 4.6, 50 -> 3.0, 100 -> 1.0."""
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if len(lowest) == 0:
        raise ValueError("no warm-up branches to set a threshold from")
    return float(np.percentile(np.asarray(lowest, dtype=float), 100.0 - percentile))


@dataclass
class BranchConfidence:
    """The running confidence of one branch as its tokens arrive (O(1) per token)."""

    window: int
    tokens: int = 0
    total: float = 0.0  # Σ c over all tokens (for the mean)
    lowest: float | None = None  # least full-window group so far
    _recent: deque[float] = field(default_factory=deque, repr=False)
    _recent_sum: float = 0.0

    def add(self, confidence: float) -> None:
        self.tokens += 1
        self.total += confidence
        self._recent.append(confidence)
        self._recent_sum += confidence
        if len(self._recent) > self.window:
            self._recent_sum -= self._recent.popleft()
        if len(self._recent) == self.window:
            # Re-summed every `window` tokens so rounding in the running sum cannot drift.
            if self.tokens % self.window == 0:
                self._recent_sum = math.fsum(self._recent)
            group = self._recent_sum / self.window
            self.lowest = group if self.lowest is None else min(self.lowest, group)

    @property
    def group(self) -> float | None:
        """The current group confidence; None before `window` tokens."""
        return self._recent_sum / self.window if len(self._recent) == self.window else None

    @property
    def mean(self) -> float | None:
        return self.total / self.tokens if self.tokens else None

    @property
    def lowest_group(self) -> float | None:
        """As `lowest_group_confidence` over every token so far."""
        return self.lowest if self.lowest is not None else self.mean


@dataclass
class ConfidenceTrimmer:
    """One program's trimming state: warm-up readings, then the threshold and the trims.

    window: tokens in a group (≥ 1). percentile: η in (0, 100] (module docstring).
    warmup: finished branches whose lowest group confidence sets the threshold (≥ 1).
    """

    window: int
    percentile: float
    warmup: int
    warm: list[float] = field(default_factory=list)
    threshold: float | None = None
    trimmed_at: list[int] = field(default_factory=list)  # each trim's branch length, in tokens

    def __post_init__(self) -> None:
        if self.window < 1 or self.warmup < 1:
            raise ValueError(f"window and warmup must be >= 1, got {self.window}, {self.warmup}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile!r}")

    def branch(self) -> BranchConfidence:
        return BranchConfidence(self.window)

    def should_trim(self, branch: BranchConfidence) -> bool:
        """Whether the branch's current group confidence is below the threshold (never before
        the threshold is set or the branch has a full group)."""
        group = branch.group
        return self.threshold is not None and group is not None and group < self.threshold

    def feed(self, branch: BranchConfidence, confidences: Iterable[float]) -> bool:
        """Add a branch's new tokens; True as soon as one of them brings its group below the
        threshold (the rest are still added: they were generated)."""
        trim = False
        for c in confidences:
            branch.add(c)
            trim = trim or self.should_trim(branch)
        return trim

    @property
    def trims(self) -> int:
        return len(self.trimmed_at)

    def trimmed(self, branch: BranchConfidence) -> None:
        """Record a trim, decided when the branch had `branch.tokens` tokens (the abort that
        follows lands some tokens later: the worker generates while it travels)."""
        self.trimmed_at.append(branch.tokens)

    def finished(self, branch: BranchConfidence, aborted: bool) -> None:
        """A branch ended. Before the threshold is set, a branch that finished on its own with
        tokens is a warm-up reading; the `warmup`-th sets the threshold."""
        lowest = branch.lowest_group
        if self.threshold is not None or aborted or lowest is None:
            return
        self.warm.append(lowest)
        if len(self.warm) >= self.warmup:
            self.threshold = warmup_threshold(self.warm, self.percentile)

    def summary(self) -> dict[str, float | int | list[int] | None]:
        return {
            "threshold": self.threshold,
            "warmup_done": len(self.warm),
            "warmup": self.warmup,
            "trimmed": self.trims,
            "trimmed_at": list(self.trimmed_at),
        }
