"""The typed experiment config. Every YAML file in configs/ parses into `ExperimentConfig`.

Bounds live in field metadata (`min`, `max`) and cross-field rules in `validate()`, so the
loader can name the offending key and the file it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Literal, Optional, Tuple

DatasetName = Literal["ml-100k", "ml-1m", "amazon-games", "amazon-2018", "csv", "parquet"]


def _bounded(default, low=None, high=None):
    """A field whose number (or every number of a list) must lie in [low, high]."""
    metadata = {"min": low, "max": high}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class ColumnsConfig:
    """Where the fields live in a csv/parquet source (names from its header or schema)."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    # A rating column; without one every row counts as a positive interaction (label 1.0).
    label: Optional[str] = None
    # Field separator of csv files; one character allows quoting, longer ones split literally.
    separator: str = ","
    # Optional item table (csv or parquet, by extension) giving text for each item id.
    items_path: Optional[str] = None
    item_id: str = "item_id"
    title: Optional[str] = "title"
    genres: Optional[str] = None
    genres_separator: str = "|"
    description: Optional[str] = None

    def validate(self) -> Optional[Tuple[str, str]]:
        if not self.separator:
            return "separator", "must not be empty"
        if not self.genres_separator:
            return "genres_separator", "must not be empty"
        return None


@dataclass
class DataConfig:
    dataset: DatasetName = "ml-100k"
    # Raw data location; None means the embedded copy (ml-100k) or the shared copy (amazon-games:
    # $LLMREC_SHARED_DATA/amazon-games, ../shared/data/amazon-games or /work/shared/data/amazon-games).
    # ml-1m and amazon-2018 take the directory the downloader wrote; csv/parquet a file or glob.
    path: Optional[str] = None
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    # A malformed row stops ingestion ("error") or is counted in stats.json and dropped ("skip").
    bad_rows: Literal["error", "skip"] = "error"
    # With bad_rows=skip, fail anyway when more rows than this are malformed (None: no limit).
    max_bad_rows: Optional[int] = _bounded(None, low=0)
    # Keep only ratings >= min_rating; None keeps every rating as an interaction.
    min_rating: Optional[float] = None
    # Users and items keep >= k_core interactions, pruned repeatedly (0 or 1 disables it).
    k_core: int = _bounded(5, low=0)
    max_kcore_rounds: int = _bounded(10, low=1)
    # leave_one_out / ratio: every user's chronological timeline is cut into train/valid/test.
    # users (EIMF's / ComiRec's protocol): the USERS are divided into train/valid/test groups by
    # split_ratios (cut points floor(n * cumulative ratio), each group kept non-empty), ranked by a
    # hash of (split_seed, raw user id). Train users' whole timelines are training data; a held-out
    # (valid or test) user's first holdout_input_fraction of items is the query input, never
    # trained on, and each remaining item is one target of its split.
    split: Literal["leave_one_out", "ratio", "users"] = "leave_one_out"
    # Train/valid/test fractions: of each user's chronological timeline under "ratio", of the
    # users under "users" (all three positive then); leave_one_out ignores them.
    split_ratios: List[float] = _bounded([0.8, 0.1, 0.1], low=0.0, high=1.0)
    # split "users": the share of a held-out user's chronological items given as input, in (0, 1);
    # the cut is floor(n * fraction) clamped to [1, n - 1], so there is one input and one target.
    holdout_input_fraction: float = _bounded(0.8, low=0.0, high=1.0)
    # split "users": users with fewer interactions than this (after k-core) cannot give an input
    # and a target, so they are dropped (counted as stats.json dropped.short_sequences). The other
    # splits ignore it.
    min_sequence_length: int = _bounded(2, low=2)
    # split "users": seeds the assignment of users to groups. It is part of the data config, so
    # each seed gets its own prepared dataset; the other splits ignore it.
    split_seed: int = _bounded(0, low=0)
    max_history: int = _bounded(50, low=1)
    # Items ranked in the top `head_fraction` by training popularity count as head.
    head_fraction: float = _bounded(0.2, low=0.0, high=1.0)
    # Users ranked in the top `active_user_fraction` by training interactions count as active.
    active_user_fraction: float = _bounded(0.2, low=0.0, high=1.0)
    num_shards: int = _bounded(4, low=1)

    def validate(self) -> Optional[Tuple[str, str]]:
        if len(self.split_ratios) != 3 or abs(sum(self.split_ratios) - 1.0) > 1e-6:
            return "split_ratios", f"expected three fractions summing to 1, got {self.split_ratios}"
        if self.split == "ratio" and self.split_ratios[0] <= 0.0:
            return "split_ratios", "the train fraction must be positive"
        if self.split == "users" and min(self.split_ratios) <= 0.0:
            return "split_ratios", (f"under split 'users' the train, valid and test fractions of users must all "
                                    f"be positive (something to train on and to evaluate), got {self.split_ratios}")
        if not 0.0 < self.holdout_input_fraction < 1.0:
            return "holdout_input_fraction", (f"must lie strictly between 0 and 1 (the share of a held-out user's "
                                              f"items given as input), got {self.holdout_input_fraction}")
        if self.dataset in ("csv", "parquet") and self.path is None:
            return "path", f"required when dataset is {self.dataset!r}"
        return None


@dataclass
class TowerConfig:
    dim: int = _bounded(64, low=1)
    # Hidden layers of the MLP on top of the embeddings; empty means one linear projection.
    hidden_dims: List[int] = _bounded([], low=1)
    # The query tower adds a learned user-ID embedding to its pooled history.
    use_user_id: bool = True
    l2_normalize: bool = True


@dataclass
class SemanticTowerConfig:
    """Trainable MLP over an item's frozen language-model vector (MotiR's semantic tower, AlphaRec)."""

    # Which precomputed vector feeds the tower: title only, title + metadata, or LLM motivation
    # (the last needs features.llm.backend set).
    source: Literal["title", "metadata", "motivation"] = "metadata"
    hidden_dims: List[int] = _bounded([256], low=1)
    activation: Literal["relu", "leaky_relu", "gelu", "tanh"] = "leaky_relu"


@dataclass
class MotirStageConfig:
    epochs: int = _bounded(10, low=1)
    learning_rate: float = _bounded(1e-3, low=0.0)
    final_learning_rate: Optional[float] = _bounded(None, low=0.0)


@dataclass
class MotirConfig:
    """MotiR's three stages: ID two-tower, alignment of the semantic tower, joint training with the gate."""

    gate: Literal["scalar", "two_weight"] = "scalar"
    # two_weight: width of the gate network's hidden layer.
    gate_hidden_dim: int = _bounded(64, low=1)
    stage1: MotirStageConfig = field(default_factory=lambda: MotirStageConfig(10, 1e-3, 1e-4))
    stage2: MotirStageConfig = field(default_factory=lambda: MotirStageConfig(20, 1e-3, None))
    stage3: MotirStageConfig = field(default_factory=lambda: MotirStageConfig(5, 1e-4, None))
    # Stage 2 stops once the mean cosine between semantic and ID item embeddings reaches this.
    align_threshold: float = _bounded(0.55, low=-1.0, high=1.0)
    # None: pointwise 1 - cosine; a float: in-batch contrastive alignment at this temperature.
    align_temperature: Optional[float] = _bounded(0.1, low=1e-6)


@dataclass
class AlphaRecConfig:
    # Intention-aware queries: the MLP sees (1 - alpha) * history mean + alpha * query text vector.
    intention_alpha: float = _bounded(0.5, low=0.0, high=1.0)
    # Zero-shot: a trained AlphaRec run directory whose MLP is applied to this dataset, untrained.
    zero_shot_from: Optional[str] = None


@dataclass
class MMoEConfig:
    num_experts: int = _bounded(4, low=1)
    expert_units: List[int] = _bounded([128, 64], low=1)
    tower_units: List[int] = _bounded([32], low=1)


@dataclass
class RankingConfig:
    """The CTR rankers (mlp_ranker, din, din_mmoe, akt_rec): shared input embeddings and heads."""

    embedding_dim: int = _bounded(16, low=1)
    # The prediction MLP over the concatenated features (and each MMoE expert's input).
    mlp_units: List[int] = _bounded([200, 80], low=1)
    # DIN's activation unit (target attention over the behaviour sequence).
    attention_units: List[int] = _bounded([80, 40], low=1)
    activation: Literal["dice", "prelu"] = "dice"
    # DIN sums attention-weighted behaviours unnormalised; softmax normalises over the sequence.
    attention_normalization: Literal["none", "softmax"] = "none"
    # The item's frozen language-model vector, projected to embedding_dim, joins its features.
    use_item_vector: bool = True
    dropout: float = _bounded(0.0, low=0.0, high=0.9)
    # L2 on the embeddings a batch reads (per example).
    embedding_l2: float = _bounded(1e-6, low=0.0)
    mmoe: MMoEConfig = field(default_factory=MMoEConfig)
    # Share of training impressions whose user and item IDs are replaced by a default ID, which so
    # learns what an ID unknown at scoring time gets.
    unknown_id_rate: float = _bounded(0.01, low=0.0, high=0.5)
    # MMoE heads on rated sources add a rating-regression task (MSE) with this weight.
    rating_loss_weight: float = _bounded(0.1, low=0.0)


@dataclass
class AktRecConfig:
    """AKT-Rec: cluster-gated embeddings (CGAE), head-to-tail transfer, hierarchical feature views (HFA).
    The ablation switches turn single parts off, as in the paper's ablation table."""

    # Cluster of an ID: its semantic-ID prefix of this many levels (RQ-VAE codes of the features job).
    cluster_level: int = _bounded(1, low=1, high=3)
    gate_units: List[int] = _bounded([16], low=1)
    transfer_temperature: float = _bounded(0.2, low=1e-6)
    # lambda1 * L(head, sg(tail)) + lambda2 * L(tail, sg(head)); lambda1 < lambda2: the tail learns more.
    lambda1: float = _bounded(0.05, low=0.0)
    lambda2: float = _bounded(0.2, low=0.0)
    orthogonality_weight: float = _bounded(0.01, low=0.0)
    head: Literal["mlp", "mmoe"] = "mlp"
    use_individual_embedding: bool = True
    use_cluster_embedding: bool = True
    use_cgae_gate: bool = True
    use_instance_view: bool = True
    use_cluster_view: bool = True
    use_hfa_gate: bool = True

    def validate(self) -> Optional[Tuple[str, str]]:
        if not (self.use_individual_embedding or self.use_cluster_embedding):
            return "use_cluster_embedding", "an ID needs its individual or its cluster embedding (or both)"
        if not (self.use_instance_view or self.use_cluster_view):
            return "use_cluster_view", "the model needs the instance view or the cluster view (or both)"
        return None


@dataclass
class SequenceConfig:
    """Sequential retrieval over the ID history: SASRec and the multi-interest models (MIND,
    ComiRec-SA, REMI, EIMF). The history is the dataset's (data.max_history items)."""

    # SASRec: causal self-attention blocks.
    num_blocks: int = _bounded(2, low=1)
    num_heads: int = _bounded(1, low=1)
    dropout: float = _bounded(0.2, low=0.0, high=0.99)
    # Multi-interest: K interest vectors per user, and the routing iterations of MIND and REMI.
    num_interests: int = _bounded(4, low=1)
    routing_iterations: int = _bounded(3, low=1)
    # How a training target meets the K interests: "argmax" takes the interest closest to it
    # (ComiRec); "label_aware" mixes them by softmax(label_aware_power * <interest, target>) (MIND).
    readout: Literal["argmax", "label_aware"] = "argmax"
    label_aware_power: float = _bounded(1.0, low=0.0)
    # REMI: interest-aware hard negatives (beta; 0 is the plain sampled softmax) and the weight of
    # the routing regulariser (lambda; 0 is off).
    hard_negative_beta: float = _bounded(0.0, low=0.0)
    routing_regularization: float = _bounded(0.0, low=0.0)


@dataclass
class EimfConfig:
    """EIMF: a multi-interest backbone (the implicit module, IBIM) trained beside explicit interests
    from the features job (ESIM) with L = L_R + gamma * (L_S + L_A); serving uses IBIM alone."""

    backbone: Literal["mind", "comirec_sa", "remi"] = "comirec_sa"
    gamma: float = _bounded(0.1, low=0.0)
    # L_A = alpha * (CL(H_ex, H_im) + CL(t, e)) + beta * (COS(H_ex, H_im) + COS(t, e)), 2(alpha + beta) = 1.
    alpha: float = _bounded(0.25, low=0.0)
    beta: float = _bounded(0.25, low=0.0)
    # Temperature of the contrastive (CL) terms.
    temperature: float = _bounded(0.1, low=1e-6)
    # Ablations: target-aware attention (off: the backbone's readout and a mean of the explicit
    # interests), the semantic prediction task L_S, the alignment task L_A.
    use_target_attention: bool = True
    use_prediction: bool = True
    use_alignment: bool = True

    def validate(self) -> Optional[Tuple[str, str]]:
        if abs(2.0 * (self.alpha + self.beta) - 1.0) > 1e-6:
            return "alpha", f"EIMF needs 2 * (alpha + beta) = 1, got alpha {self.alpha} and beta {self.beta}"
        return None


@dataclass
class ModelConfig:
    name: Literal["pop", "two_tower", "mf_bpr", "lightgcn", "motir", "alpharec", "sasrec", "mind", "comirec_sa",
                  "remi", "eimf", "mlp_ranker", "din", "din_mmoe", "akt_rec"] = "two_tower"
    tower: TowerConfig = field(default_factory=TowerConfig)
    temperature: float = _bounded(0.05, low=1e-6)
    # Extra negatives per batch drawn from the whole catalogue, on top of in-batch negatives.
    num_sampled_negatives: int = _bounded(0, low=0)
    negative_sampler: Literal["uniform", "popularity"] = "uniform"
    # Subtract log(expected occurrences in the candidate set) so popular items are not over-penalised.
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    # mf_bpr and lightgcn: L2 on the batch's embeddings.
    l2_weight: float = _bounded(1e-4, low=0.0)
    # mf_bpr and lightgcn: redraw a sampled negative that is one of the user's training items (as
    # RecBole's sampler does); false disables the check (plain uniform negatives).
    negatives_exclude_train_items: bool = True
    # mf_bpr and lightgcn tables: normal draws N(0, 0.1); glorot draws Glorot-normal, std about
    # sqrt(2 / (rows + dim)) (RecBole's Xavier), so a user with a handful of interactions is not
    # left holding mostly its random start (Amazon: 0.006 for 50,546 users).
    embedding_init: Literal["normal", "glorot"] = "normal"
    # lightgcn and alpharec: propagation layers.
    lightgcn_layers: int = _bounded(3, low=0)
    # Sampled-softmax models under several replicas: every replica's positives are in-batch
    # negatives of every row, as in one process with the global batch (costs an all-gather of IDs).
    cross_replica_negatives: bool = False
    semantic: SemanticTowerConfig = field(default_factory=SemanticTowerConfig)
    motir: MotirConfig = field(default_factory=MotirConfig)
    alpharec: AlphaRecConfig = field(default_factory=AlphaRecConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    akt_rec: AktRecConfig = field(default_factory=AktRecConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    eimf: EimfConfig = field(default_factory=EimfConfig)

    def validate(self) -> Optional[Tuple[str, str]]:
        # The REMI backbone is MIND's routing trained with REMI's two terms; with both off, an EIMF
        # run labelled "over REMI" would silently be EIMF over MIND.
        if (self.name == "eimf" and self.eimf.backbone == "remi" and self.sequence.hard_negative_beta == 0
                and self.sequence.routing_regularization == 0):
            return "eimf.backbone", ("'remi' needs model.sequence.hard_negative_beta or "
                                     "model.sequence.routing_regularization above 0 (configs/*_remi.yaml sets "
                                     "REMI's values); with both 0 it trains as 'mind'")
        return None


@dataclass
class TrainConfig:
    epochs: int = _bounded(10, low=1)
    batch_size: int = _bounded(1024, low=1)
    optimizer: Literal["adam", "adagrad"] = "adam"
    learning_rate: float = _bounded(1e-3, low=0.0)
    # Adam's (or Adagrad's) epsilon; 1e-7 is Keras's default. Keras adds it to the root of Adam's
    # uncorrected second moment, so at step t it weighs eps / sqrt(1 - 0.999^t) (31.6 x eps at step 1,
    # 1.26 x after 1,000 steps); torch adds its 1e-8 to the corrected root. With embedding tables
    # of tens of thousands of rows under a batch-mean loss, gradients near 1e-6 feel the difference.
    optimizer_epsilon: float = _bounded(1e-7, low=1e-12)
    # Learning rate reached at the last step (exponential decay); None keeps it constant.
    final_learning_rate: Optional[float] = _bounded(None, low=0.0)
    shuffle_buffer: int = _bounded(100_000, low=1)
    # Stop when the validation `monitor` metric has not improved for this many epochs.
    early_stopping_patience: int = _bounded(3, low=0)
    monitor: str = "recall@20"
    # Validation users scored each epoch for `monitor`: None scores all of them, as the final
    # evaluation does; a number scores a fixed seeded sample (cheaper on very large user bases,
    # but then model selection follows a sample).
    monitor_max_users: Optional[int] = _bounded(None, low=1)
    # single: one process; mirrored: the GPUs of one host; multi_worker: MultiWorkerMirroredStrategy
    # from TF_CONFIG (`llmrec launch`, a TFJob); horovod: one process per rank under horovodrun.
    strategy: Literal["single", "mirrored", "multi_worker", "horovod"] = "single"
    # global: batch_size is what one optimizer step sees, whatever the number of replicas (results
    # do not depend on it); per_replica: each replica takes batch_size (weak scaling).
    batch_scaling: Literal["global", "per_replica"] = "global"
    # Learning rate x (global batch / batch_size) (linear) or its square root (sqrt): only changes
    # anything with batch_scaling per_replica.
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    # Linear ramp of the learning rate from 0 over the first steps (with lr_scaling, Goyal et al.).
    warmup_steps: int = _bounded(0, low=0)
    # Horovod: all-reduce embedding gradients as dense tensors instead of all-gathering IndexedSlices.
    sparse_as_dense: bool = False
    # mixed_float16 compute with dynamic loss scaling (GPUs); variables stay float32.
    mixed_precision: bool = False
    # XLA-compile the loss and its gradient (not the collectives).
    jit_compile: bool = False
    # Also checkpoint every this many steps (0: only at epoch ends and on SIGTERM).
    checkpoint_every_steps: int = _bounded(0, low=0)
    # Step checkpoints kept in latest/ (the best epoch is kept separately).
    keep_checkpoints: int = _bounded(2, low=1)

    def validate(self) -> Optional[Tuple[str, str]]:
        name, _, k = self.monitor.partition("@")
        if self.monitor in ("auc", "gauc"):  # the CTR rankers' validation metrics
            return None
        if name not in ("recall", "ndcg", "hr", "mrr") or (name != "mrr" and not k.isdigit()):
            return "monitor", f"expected recall@K, ndcg@K, hr@K, mrr, auc or gauc, got {self.monitor!r}"
        return None


@dataclass
class EvalConfig:
    ks: List[int] = _bounded([10, 20, 50], low=1)
    batch_size: int = _bounded(512, low=1)
    # Items scored per chunk: bounds memory at batch_size x item_chunk scores.
    item_chunk: int = _bounded(65536, low=1)
    split: Literal["valid", "test"] = "valid"
    # Baselines evaluated beside the configured model, on the same split.
    baselines: List[Literal["pop"]] = field(default_factory=lambda: ["pop"])


@dataclass
class ExportConfig:
    enabled: bool = True
    # Retrieval SavedModels to write (BruteForce always: it is the one stock TF Serving can load);
    # ScaNN's recall@top_k against exact search is reported.
    indexes: List[Literal["brute_force", "scann"]] = field(default_factory=lambda: ["brute_force", "scann"])
    top_k: int = _bounded(100, low=1)
    # ScaNN partitioning; None picks by catalogue size (serving.indexes.IndexSettings.resolved_scann:
    # about sqrt(num_items) leaves; a fifth of them searched up to ~20k items, 2.4 x sqrt(leaves) beyond).
    scann_num_leaves: Optional[int] = _bounded(None, low=1)
    scann_num_leaves_to_search: Optional[int] = _bounded(None, low=1)
    # Users whose ScaNN top-K is compared with brute force for the reported recall.
    recall_sample_users: int = _bounded(1000, low=1)


@dataclass
class HttpEndpointConfig:
    """An OpenAI-compatible HTTP endpoint (vLLM, Ollama, llama.cpp server, a hosted API)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    # Name of the environment variable holding the API key; the key itself never enters a config.
    api_key_env: Optional[str] = None
    timeout_s: float = _bounded(60.0, low=0.001)
    max_retries: int = _bounded(4, low=0)
    # First retry waits this long; later ones double it (plus jitter), capped at 30x.
    backoff_s: float = _bounded(1.0, low=0.0)
    max_concurrency: int = _bounded(4, low=1)
    batch_size: int = _bounded(16, low=1)


@dataclass
class EncoderConfig:
    """Text encoder that turns item/user texts into semantic vectors."""

    kind: Literal["minilm", "saved_model", "openai_embeddings"] = "minilm"
    batch_size: int = _bounded(64, low=1)
    # Tokens per text after WordPiece, [CLS] and [SEP] included (MiniLM was trained with 256).
    max_length: int = _bounded(128, low=8, high=512)
    # kind=saved_model: a SavedModel whose serving_default maps a string batch to vectors.
    saved_model_path: Optional[str] = None
    endpoint: HttpEndpointConfig = field(default_factory=HttpEndpointConfig)

    def validate(self) -> Optional[Tuple[str, str]]:
        if self.kind == "saved_model" and not self.saved_model_path:
            return "saved_model_path", "required when kind is 'saved_model'"
        if self.kind == "openai_embeddings" and not self.endpoint.model:
            return "endpoint", "endpoint.model is required when kind is 'openai_embeddings'"
        return None


@dataclass
class LLMConfig:
    """LLM backend for generated texts: motivations (MotiR) and explicit interests (EIMF)."""

    backend: Literal["none", "openai", "gguf"] = "none"
    endpoint: HttpEndpointConfig = field(default_factory=HttpEndpointConfig)
    # backend=gguf: a local GGUF model file (needs the [gguf] extra).
    gguf_path: Optional[str] = None
    # Prompt templates live in tfrs_llmrec/llm/prompts/<name>.v<version>.txt.
    prompt_version: int = _bounded(1, low=1)
    temperature: float = _bounded(0.0, low=0.0)
    max_tokens: int = _bounded(256, low=1)
    # Responses are cached here (None: <output_dir>/llm_cache).
    cache_dir: Optional[str] = None
    # EIMF: at most this many explicit interests per user.
    max_interests: int = _bounded(5, low=1)
    # EIMF: where each typical user's explicit interests come from. "llm": phrases the LLM writes
    # from its training item titles, then encoded (none when backend is "none"); "item_centroids":
    # no LLM, the L2-normalised k-means centroids (k = min(max_interests, its distinct items), seeded) of
    # its training items' metadata vectors, largest cluster first. Either way, shared with its
    # Affinity-Propagation cluster; the features manifest records the source (llm.interests.source).
    interests_source: Literal["llm", "item_centroids"] = "llm"
    # EIMF typical-sample selection with Affinity Propagation: preference (None: median similarity),
    # damping, and how many users are clustered exactly (the rest join their nearest exemplar).
    ap_preference: Optional[float] = None
    ap_damping: float = _bounded(0.7, low=0.5, high=0.99)
    ap_max_users: int = _bounded(2000, low=2)

    def validate(self) -> Optional[Tuple[str, str]]:
        if self.backend == "openai" and not self.endpoint.model:
            return "endpoint", "endpoint.model is required when backend is 'openai'"
        if self.backend == "gguf" and not self.gguf_path:
            return "gguf_path", "required when backend is 'gguf'"
        return None


@dataclass
class CollaborativeProjectionConfig:
    """AKT-Rec's collaborative-aware item vectors (its Eq. 1): an identity-initialised linear map of
    the LM vectors trained with InfoNCE on items consecutive in users' training timelines, applied
    before the item RQ-VAE (tfrs_llmrec.semantic_ids.collaborative)."""

    enabled: bool = False
    epochs: int = _bounded(10, low=1)
    batch_size: int = _bounded(1024, low=2)
    learning_rate: float = _bounded(1e-3, low=0.0)
    temperature: float = _bounded(0.1, low=1e-6)


@dataclass
class SemanticIdConfig:
    """RQ-VAE semantic IDs over item (and user) semantic vectors."""

    enabled: bool = True
    num_levels: int = _bounded(3, low=1)
    codebook_size: int = _bounded(256, low=2)
    latent_dim: int = _bounded(32, low=1)
    hidden_dims: List[int] = _bounded([256, 128], low=1)
    epochs: int = _bounded(50, low=1)
    batch_size: int = _bounded(256, low=1)
    learning_rate: float = _bounded(1e-3, low=0.0)
    commitment_weight: float = _bounded(0.25, low=0.0)
    # Codes unused for a whole epoch are moved onto recent residuals the quantiser fits worst.
    dead_code_reset: bool = True
    # "clusters": similar items may share a code (AKT-Rec); "unique": a last level disambiguates.
    mode: Literal["clusters", "unique"] = "clusters"
    collaborative: CollaborativeProjectionConfig = field(default_factory=CollaborativeProjectionConfig)


@dataclass
class FeaturesConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    semantic_ids: SemanticIdConfig = field(default_factory=SemanticIdConfig)


@dataclass
class CtrDataConfig:
    """CTR samples (beam_jobs/ctr.py): labelled impressions derived from a prepared dataset and its
    semantic features, split per user chronologically, with behaviour sequences, attributes and
    activity buckets (tfrs_llmrec.data.ctr_spec)."""

    # Sources with ratings (MovieLens): every rating is an impression, a click when rating >= this.
    positive_rating: float = 4.0
    # Sources without ratings (every interaction a positive, e.g. Amazon Games): this many negatives
    # per positive, drawn from the items' training popularity ** negative_power, seeded by `seed`.
    negatives_per_positive: int = _bounded(1, low=1)
    negative_power: float = _bounded(0.75, low=0.0)
    # Per-user chronological train/valid/test fractions of the impressions.
    split_ratios: List[float] = _bounded([0.8, 0.1, 0.1], low=0.0, high=1.0)
    # Behaviour sequence: the user's positively-labelled items strictly before the impression.
    max_history: int = _bounded(50, low=1)
    # Activity features are training-split counts in log2 buckets: 0, 1, 2-3, 4-7, ...; the last is open.
    activity_buckets: int = _bounded(8, low=2)
    num_shards: int = _bounded(4, low=1)

    def validate(self) -> Optional[Tuple[str, str]]:
        if len(self.split_ratios) != 3 or abs(sum(self.split_ratios) - 1.0) > 1e-6 or self.split_ratios[0] <= 0:
            return "split_ratios", f"expected three fractions summing to 1, train positive, got {self.split_ratios}"
        return None


@dataclass
class CascadeConfig:
    """Retrieval then ranking, evaluated by a ranker's evaluate stage: a finished retrieval run
    retrieves the top_k items per user of the prepared dataset's eval split, the ranker reorders
    them, and the report sets recall/NDCG of the reordered list beside retrieval alone."""

    # A finished retrieval run directory (it holds config.yaml and checkpoints/) on the same
    # prepared dataset; None: no cascade.
    retriever_run: Optional[str] = None
    top_k: int = _bounded(100, low=1)
    ks: List[int] = _bounded([10, 20], low=1)


@dataclass
class PipelineConfig:
    """`llmrec pipeline`: the TFX pipeline of the stages (pipelines/), its release gates and where it pushes.

    Relative paths are taken under output_dir; absolute paths and URLs are used as given."""

    # Artefacts (None: <output_dir>/pipelines/<pipeline name>/root) and the ML Metadata SQLite store
    # (None: <output_dir>/pipelines/<pipeline name>/metadata.sqlite) of local runs.
    pipeline_root: Optional[str] = None
    metadata_path: Optional[str] = None
    # TF Serving model base: pushes go to <serving_base>/<model_name>/<version>/ (BruteForce),
    # <model_name>-scann/<version>/ and <model_name>-item-tower/<version>/.
    serving_base: str = "serving"
    # None: the experiment's name.
    model_name: Optional[str] = None
    # The model is blessed when this metric (of eval.split; K must be one of eval.ks) beats Pop's by
    # at least min_recall_gain_over_pop and is at most max_recall_drop_vs_blessed below the last
    # blessed model's (on the same prepared dataset).
    metric: str = "recall@20"
    min_recall_gain_over_pop: float = _bounded(0.01, low=-1.0, high=1.0)
    max_recall_drop_vs_blessed: float = _bounded(0.01, low=0.0, high=1.0)
    # The indexes are blessed when ScaNN's recall@export.top_k against exact search reaches this.
    min_scann_recall: float = _bounded(0.8, low=0.0, high=1.0)
    # Container image of every step when the pipeline is compiled for Kubeflow (`--image` overrides it).
    image: str = "llmrec-trainer:0.1.0"

    def validate(self) -> Optional[Tuple[str, str]]:
        name, _, k = self.metric.partition("@")
        if name not in ("recall", "ndcg", "hr") or not k.isdigit():
            return "metric", f"expected recall@K, ndcg@K or hr@K, got {self.metric!r}"
        if not self.serving_base:
            return "serving_base", "must not be empty"
        return None


@dataclass
class SearchDimension:
    """One searched config key (dotted, e.g. train.learning_rate) and its candidate values."""

    key: str
    values: List[Any] = field(default_factory=list)

    def validate(self) -> Optional[Tuple[str, str]]:
        if not self.values:
            return "values", "needs at least one candidate value"
        if any(not part for part in self.key.split(".")) or self.key.split(".")[0] in ("name", "tune", "output_dir"):
            return "key", f"{self.key!r} must name a config key of the model, training or data sections"
        return None


@dataclass
class TuneConfig:
    """`llmrec tune`: a seeded random search over a grid, selected on the validation split only."""

    # The grid, declared per model family in its config. A list, so a config's space replaces the
    # space of the config it includes instead of merging with it.
    space: List[SearchDimension] = field(default_factory=list)
    # Trials per search: one budget for every model, so no model is tuned harder than another. A
    # grid smaller than the budget is searched whole.
    trials: int = _bounded(4, low=1)
    # Which combinations are drawn.
    seed: int = _bounded(0, low=0)

    def validate(self) -> Optional[Tuple[str, str]]:
        keys = [dimension.key for dimension in self.space]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            return "space", f"keys searched twice: {', '.join(repeated)}"
        return None


@dataclass
class ExperimentConfig:
    name: str
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    ctr: CtrDataConfig = field(default_factory=CtrDataConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
