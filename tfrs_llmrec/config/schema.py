"""The typed experiment config. Every YAML file in configs/ parses into `ExperimentConfig`.

Bounds live in field metadata (`min`, `max`) and cross-field rules in `validate()`, so the
loader can name the offending key and the file it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional, Tuple

DatasetName = Literal["ml-100k", "amazon-games", "csv", "parquet"]


def _bounded(default, low=None, high=None):
    """A field whose number (or every number of a list) must lie in [low, high]."""
    metadata = {"min": low, "max": high}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    dataset: DatasetName = "ml-100k"
    # Raw data location; None means the embedded copy (ml-100k) or ../shared/data (amazon-games).
    path: Optional[str] = None
    k_core: int = _bounded(5, low=0)
    split: Literal["leave_one_out", "ratio"] = "leave_one_out"
    split_ratios: List[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    max_history: int = _bounded(50, low=1)
    # Items ranked in the top `head_fraction` by training popularity count as head.
    head_fraction: float = _bounded(0.2, low=0.0, high=1.0)
    num_shards: int = _bounded(4, low=1)

    def validate(self) -> Optional[Tuple[str, str]]:
        if len(self.split_ratios) != 3 or abs(sum(self.split_ratios) - 1.0) > 1e-6:
            return "split_ratios", f"expected three fractions summing to 1, got {self.split_ratios}"
        if self.dataset in ("csv", "parquet") and self.path is None:
            return "path", f"required when dataset is {self.dataset!r}"
        return None


@dataclass
class TowerConfig:
    dim: int = _bounded(64, low=1)
    hidden_dims: List[int] = _bounded([], low=1)


@dataclass
class ModelConfig:
    name: Literal["pop", "two_tower"] = "two_tower"
    tower: TowerConfig = field(default_factory=TowerConfig)
    temperature: float = _bounded(0.05, low=1e-6)
    # Extra negatives drawn from the catalogue by popularity, on top of in-batch negatives.
    num_sampled_negatives: int = _bounded(0, low=0)
    logq_correction: bool = True


@dataclass
class TrainConfig:
    epochs: int = _bounded(10, low=1)
    batch_size: int = _bounded(1024, low=1)
    learning_rate: float = _bounded(1e-3, low=0.0)
    # Stop when the validation `monitor` metric has not improved for this many epochs.
    early_stopping_patience: int = _bounded(3, low=0)
    monitor: str = "recall@20"


@dataclass
class EvalConfig:
    ks: List[int] = _bounded([10, 20, 50], low=1)
    batch_size: int = _bounded(512, low=1)


@dataclass
class ExportConfig:
    index: Literal["brute_force", "scann"] = "scann"
    top_k: int = _bounded(100, low=1)


@dataclass
class ExperimentConfig:
    name: str
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
