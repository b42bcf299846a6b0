"""The release gates, as plain functions: the Evaluator's model blessing and IndexBuilder's index
blessing. The components record the verdict and its reasons in ML Metadata and in their outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

# Metrics are means of many floats: a value equal to a threshold up to rounding meets it.
TOLERANCE = 1e-9


@dataclass
class Verdict:
    blessed: bool
    reasons: List[str] = field(default_factory=list)


@dataclass
class Baseline:
    """The last blessed model's gate metric, if it was measured the same way as this run's."""

    value: float
    model_id: int
    comparable: bool = True
    why_not: str = ""


def model_verdict(metric: str, value: float, pop_value: float, min_gain_over_pop: float,
                  baseline: Optional[Baseline], max_drop_vs_blessed: float) -> Verdict:
    """Blessed when `value` is at least `min_gain_over_pop` above Pop's and at most
    `max_drop_vs_blessed` below the last blessed model's (when there is a comparable one)."""
    reasons = []
    blessed = True
    gain = value - pop_value
    if gain >= min_gain_over_pop - TOLERANCE:
        reasons.append(f"{metric} {value:.4f} beats Pop's {pop_value:.4f} by {gain:+.4f} "
                       f"(at least {min_gain_over_pop:+.4f} required)")
    else:
        blessed = False
        reasons.append(f"{metric} {value:.4f} is {gain:+.4f} from Pop's {pop_value:.4f}; "
                       f"at least {min_gain_over_pop:+.4f} is required")
    if baseline is None:
        reasons.append("no blessed model to compare with yet")
    elif not baseline.comparable:
        reasons.append(f"last blessed model (artifact {baseline.model_id}) not compared: {baseline.why_not}")
    else:
        drop = baseline.value - value
        if drop <= max_drop_vs_blessed + TOLERANCE:
            reasons.append(f"{metric} {value:.4f} against the last blessed model's {baseline.value:.4f} "
                           f"(artifact {baseline.model_id}): a drop of {drop:+.4f}, at most "
                           f"{max_drop_vs_blessed:.4f} allowed")
        else:
            blessed = False
            reasons.append(f"{metric} {value:.4f} is {drop:.4f} below the last blessed model's "
                           f"{baseline.value:.4f} (artifact {baseline.model_id}); at most "
                           f"{max_drop_vs_blessed:.4f} is allowed")
    return Verdict(blessed, reasons)


def index_verdict(scann_recall: Optional[float], k: int, min_scann_recall: float) -> Verdict:
    """Blessed when ScaNN's recall@k against exact search reaches `min_scann_recall`; with no ScaNN
    index (export.indexes without scann) there is nothing approximate to check."""
    if scann_recall is None:
        return Verdict(True, ["no ScaNN index configured: the BruteForce index is exact"])
    if scann_recall >= min_scann_recall - TOLERANCE:
        return Verdict(True, [f"ScaNN recall@{k} against exact search {scann_recall:.4f} "
                              f"(at least {min_scann_recall:.4f} required)"])
    return Verdict(False, [f"ScaNN recall@{k} against exact search {scann_recall:.4f} is below "
                           f"{min_scann_recall:.4f}"])
