"""Every model by name, with what it needs to be built: the trainer, evaluator and exporter look
models up here instead of branching on names."""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from tfrs_llmrec.config.schema import ModelConfig
from tfrs_llmrec.models.alpharec import AlphaRecModel
from tfrs_llmrec.models.base import RecommenderModel
from tfrs_llmrec.models.lightgcn import LightGCNModel
from tfrs_llmrec.models.mf_bpr import MatrixFactorizationModel
from tfrs_llmrec.models.motir import MotiRModel
from tfrs_llmrec.models.pop import PopularityModel
from tfrs_llmrec.models.sequential import MultiInterestModel, SasRecModel
from tfrs_llmrec.models.two_tower import TwoTowerModel


@dataclass(frozen=True)
class ModelInputs:
    """What a dataset and the features job provide to build a model."""

    num_users: int
    item_train_counts: np.ndarray
    # (users, items) of the training interactions: the graph models and the BPR negatives need them.
    train_pairs: Optional[Tuple[np.ndarray, np.ndarray]] = None
    # [I, d] language-model vectors of the configured semantic source: the semantic models need them.
    item_vectors: Optional[np.ndarray] = None
    seed: Optional[int] = None
    # Items per history (data.max_history): the sequence models' positions.
    max_history: int = 50
    # [U, M, d] explicit interests and [U] their counts from the features job: EIMF needs them.
    user_interests: Optional[Tuple[np.ndarray, np.ndarray]] = None


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[ModelConfig, ModelInputs], Union[PopularityModel, RecommenderModel]]
    needs_train_pairs: bool = False
    needs_item_vectors: bool = False
    needs_interests: bool = False
    trains: bool = True


MODELS: Dict[str, ModelSpec] = {
    "pop": ModelSpec(lambda config, inputs: PopularityModel(inputs.item_train_counts), trains=False),
    "two_tower": ModelSpec(lambda config, inputs: TwoTowerModel(
        inputs.num_users, len(inputs.item_train_counts), inputs.item_train_counts, config, seed=inputs.seed)),
    "mf_bpr": ModelSpec(lambda config, inputs: MatrixFactorizationModel(
        inputs.num_users, len(inputs.item_train_counts), *inputs.train_pairs, config, seed=inputs.seed),
        needs_train_pairs=True),
    "lightgcn": ModelSpec(lambda config, inputs: LightGCNModel(
        inputs.num_users, len(inputs.item_train_counts), *inputs.train_pairs, config, seed=inputs.seed),
        needs_train_pairs=True),
    "motir": ModelSpec(lambda config, inputs: MotiRModel(
        inputs.num_users, inputs.item_vectors, inputs.item_train_counts, config, seed=inputs.seed),
        needs_item_vectors=True),
    "alpharec": ModelSpec(lambda config, inputs: AlphaRecModel(
        inputs.item_vectors, inputs.num_users, *inputs.train_pairs, config, seed=inputs.seed),
        needs_train_pairs=True, needs_item_vectors=True),
    "sasrec": ModelSpec(lambda config, inputs: SasRecModel(
        len(inputs.item_train_counts), inputs.max_history, inputs.item_train_counts, config, seed=inputs.seed)),
    **{backbone: ModelSpec(lambda config, inputs, backbone=backbone: MultiInterestModel(
        len(inputs.item_train_counts), inputs.max_history, inputs.item_train_counts, config, backbone,
        seed=inputs.seed)) for backbone in ("mind", "comirec_sa", "remi")},
    "eimf": ModelSpec(lambda config, inputs: _eimf(config, inputs), needs_item_vectors=True, needs_interests=True),
}


def _eimf(config: ModelConfig, inputs: ModelInputs):
    from tfrs_llmrec.models.eimf import EimfModel

    interests, counts = inputs.user_interests
    return EimfModel(len(inputs.item_train_counts), inputs.max_history, inputs.item_train_counts, inputs.item_vectors,
                     interests, counts, config, seed=inputs.seed)


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, config: ModelConfig, inputs: ModelInputs):
    spec = model_spec(name)
    if spec.needs_train_pairs and inputs.train_pairs is None:
        raise ValueError(f"{name} needs the training interactions (train_pairs)")
    if spec.needs_item_vectors and inputs.item_vectors is None:
        raise ValueError(f"{name} needs the items' semantic vectors (item_vectors)")
    if spec.needs_interests and inputs.user_interests is None:
        raise ValueError(f"{name} needs the users' explicit interests (user_interests)")
    return spec.build(config, inputs)


def is_trainable(name: str, config: ModelConfig) -> bool:
    """Pop has nothing to learn; a zero-shot AlphaRec reuses another dataset's trained MLP."""
    if name in RANKERS:
        return True
    return model_spec(name).trains and not (name == "alpharec" and config.alpharec.zero_shot_from is not None)


# CTR rankers: (history pooling, head) of the DIN family; AKT-Rec composes its own.
RANKERS = ("mlp_ranker", "din", "din_mmoe", "akt_rec")


def is_ranker(name: str) -> bool:
    """Whether `name` is a CTR ranker (trained and evaluated on CTR samples) rather than a retriever."""
    return name in RANKERS


def build_ranker(name: str, config: ModelConfig, inputs, seed: Optional[int] = None):
    """The untrained ranker `name` from `inputs` (a `rankers.CtrInputs`)."""
    from tfrs_llmrec.models.rankers import RANKER_LAYOUTS, DeepInterestRanker

    if name == "akt_rec":
        from tfrs_llmrec.models.akt_rec import AktRecModel

        return AktRecModel(inputs, config, seed=seed)
    if name not in RANKER_LAYOUTS:
        raise ValueError(f"unknown ranker {name!r}; expected one of {', '.join(RANKERS)}")
    pooling, head = RANKER_LAYOUTS[name]
    return DeepInterestRanker(inputs, config, pooling=pooling, head=head, seed=seed)
