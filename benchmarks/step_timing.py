"""Timing of compiled Keras train steps shared by the step-time benchmarks: blocks of steps
interleaved over rounds in a rotating order, so load from other processes hits every model alike,
and ratios as medians of per-round paired ratios."""

import statistics
import time
from typing import Dict, Hashable, List, Tuple


def time_block(train_function, iterator, steps: int) -> Tuple[float, float]:
    """Seconds per step over `steps` compiled train steps, and the last step's loss."""
    started = time.perf_counter()
    for _ in range(steps):
        logs = train_function(iterator)
    loss = float(logs["loss"])  # waits for the last step
    return (time.perf_counter() - started) / steps, loss


def interleaved_step_times(units: Dict[Hashable, Tuple[object, object]], rounds: int, steps: int
                           ) -> Tuple[Dict[Hashable, List[float]], Dict[Hashable, List[float]]]:
    """Per unit (train_function, iterator): seconds per step and last loss of each round's block."""
    keys = list(units)
    step_s = {key: [] for key in keys}
    losses = {key: [] for key in keys}
    for round_index in range(rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            seconds, loss = time_block(*units[key], steps)
            step_s[key].append(seconds)
            losses[key].append(loss)
    return step_s, losses


def paired_ratio(step_s: Dict[Hashable, List[float]], numerator: Hashable, denominator: Hashable) -> float:
    """The median over rounds of numerator / denominator step time (paired within a round)."""
    return statistics.median(a / b for a, b in zip(step_s[numerator], step_s[denominator]))
