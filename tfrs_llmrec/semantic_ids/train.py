"""Fit an RQ-VAE over semantic vectors and turn it into semantic IDs.

    result = fit_semantic_ids(item_vectors, config.features.semantic_ids, seed=config.seed)
    result.codes           # int32 [n, L] ("clusters") or [n, L + 1] ("unique")
    result.stats           # reconstruction, usage and perplexity per level, collisions, history, seconds
    save_quantizer(result.model, "runs/x/rqvae")
    codes = assign_codes(load_quantizer("runs/x/rqvae"), new_vectors)

Mode "clusters" keeps the L quantiser levels: near-duplicate items may share a whole tuple, which
AKT-Rec uses on purpose as a cluster ID. Mode "unique" appends one level that numbers the items
sharing a tuple 0, 1, 2, ... in row order, so every tuple is unique and a later row never changes
the number of an earlier one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import tensorflow as tf

from tfrs_llmrec.atomic_files import building_directory
from tfrs_llmrec.config.schema import SemanticIdConfig
from tfrs_llmrec.layers.rqvae import RQVAE, CodebookMonitor

# k-means initialisation runs on the first `KMEANS_POINTS_PER_CODE * codebook_size` rows of the
# shuffled data (at least one batch), about the first few batches of the first epoch.
KMEANS_POINTS_PER_CODE = 32
INFERENCE_BATCH = 4096
CONFIG_FILE = "rqvae.json"
CHECKPOINT_PREFIX = "weights"


@dataclass
class SemanticIdResult:
    codes: np.ndarray  # int32 [n, L] or [n, L + 1]
    stats: Dict[str, Any]
    model: RQVAE
    mode: str = "clusters"
    # Number of values each column takes: codebook_size per quantiser level, then (unique mode)
    # the largest collision group.
    cardinalities: List[int] = field(default_factory=list)


def _as_matrix(vectors) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"expected a non-empty [n, d] array of vectors, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("vectors contain NaN or infinite values")
    return matrix


def build_model(input_dim: int, config: SemanticIdConfig, seed: int) -> RQVAE:
    reservoir = max(4 * config.batch_size, 2 * config.codebook_size)
    return RQVAE(input_dim, latent_dim=config.latent_dim, hidden_dims=config.hidden_dims,
                 num_levels=config.num_levels, codebook_size=config.codebook_size,
                 commitment_weight=config.commitment_weight, reservoir_size=reservoir, seed=seed).build_all()


def _run_inference(model: RQVAE, vectors: np.ndarray, batch_size: int = INFERENCE_BATCH) -> Dict[str, Any]:
    """Codes of every row, plus sums (in float64, batch by batch) for the reconstruction statistics."""
    codes, squared_error, residual_energy = [], 0.0, np.zeros(model.num_levels + 1)
    squares, column_sums = 0.0, np.zeros(vectors.shape[1])
    for start in range(0, vectors.shape[0], batch_size):
        batch = vectors[start:start + batch_size]
        output = model.inference(batch)
        codes.append(output["codes"].numpy())
        squared_error += float(np.sum(np.square(batch - output["reconstruction"].numpy(), dtype=np.float64)))
        residual_energy += np.sum(np.square(output["residuals"].numpy(), dtype=np.float64), axis=(0, 2))
        squares += float(np.sum(np.square(batch, dtype=np.float64)))
        column_sums += np.sum(batch, axis=0, dtype=np.float64)
    return {"codes": np.concatenate(codes).astype(np.int32), "squared_error": squared_error,
            "residual_energy": residual_energy, "squares": squares,
            "centred_squares": squares - float(column_sums @ column_sums) / vectors.shape[0]}


def assign_codes(model: RQVAE, vectors, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    """The quantiser's codes (int32 [n, num_levels]) for any vectors of the model's input size."""
    matrix = _as_matrix(vectors)
    if matrix.shape[1] != model.input_dim:
        raise ValueError(f"vectors have {matrix.shape[1]} dims, the quantiser expects {model.input_dim}")
    return _run_inference(model, matrix, batch_size)["codes"]


def _tuple_groups(codes: np.ndarray):
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def disambiguate(codes: np.ndarray, existing: Optional[np.ndarray] = None) -> np.ndarray:
    """Appends a level numbering the rows that share a tuple 0, 1, 2, ... in row order.

    `existing` ([m, L + 1], already disambiguated) makes the new rows continue after the largest
    number already taken by their tuple, so IDs of earlier rows never change.
    """
    codes = np.asarray(codes, dtype=np.int32)
    if codes.ndim != 2:
        raise ValueError(f"expected codes [n, L], got shape {codes.shape}")
    extra = np.zeros(codes.shape[0], dtype=np.int32)
    if codes.shape[0]:
        inverse, counts = _tuple_groups(codes)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        extra[order] = np.arange(codes.shape[0]) - starts[inverse[order]]
        if existing is not None and len(existing):
            existing = np.asarray(existing, dtype=np.int64)
            if existing.shape[1] != codes.shape[1] + 1:
                raise ValueError(f"existing codes need {codes.shape[1] + 1} columns, got {existing.shape[1]}")
            next_free: Dict[tuple, int] = {}
            for row in existing:
                key = tuple(row[:-1].tolist())
                next_free[key] = max(next_free.get(key, 0), int(row[-1]) + 1)
            extra += np.array([next_free.get(tuple(row.tolist()), 0) for row in codes], dtype=np.int32)
    return np.concatenate([codes, extra[:, None]], axis=1)


def code_statistics(codes: np.ndarray, codebook_size: int) -> Dict[str, Any]:
    """Usage and perplexity per level, and how many rows share their whole tuple with another row."""
    codes = np.asarray(codes)
    n, levels = codes.shape
    usage, perplexity = [], []
    for level in range(levels):
        counts = np.bincount(codes[:, level], minlength=codebook_size)
        probabilities = counts[counts > 0] / n
        usage.append(float(np.count_nonzero(counts) / codebook_size))
        perplexity.append(float(np.exp(-np.sum(probabilities * np.log(probabilities)))))
    inverse, counts = _tuple_groups(codes)
    in_collision = counts[inverse] > 1
    return {"usage_per_level": usage, "perplexity_per_level": perplexity,
            "unique_tuples": int(counts.size), "collision_rate": float(np.mean(in_collision)),
            "max_collision_group": int(counts.max()),
            "colliding_groups": int(np.count_nonzero(counts > 1))}


class _EpochProgress(tf.keras.callbacks.Callback):
    def __init__(self, epochs: int, description: str):
        super().__init__()
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epochs, desc=description, unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.set_postfix({key: f"{float(value):.4g}" for key, value in logs.items()})
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


def _finish(model: RQVAE, vectors: np.ndarray, mode: str, history: Dict[str, Any], timings: Dict[str, float],
            started: float) -> SemanticIdResult:
    assign_started = time.perf_counter()
    inference = _run_inference(model, vectors)
    quantiser_codes = inference["codes"]
    stats = code_statistics(quantiser_codes, model.codebook_size)
    total_variance = inference["centred_squares"]
    energy = inference["residual_energy"]
    stats.update({
        "num_vectors": int(vectors.shape[0]),
        "input_dim": int(vectors.shape[1]),
        # Per element; for L2-normalised d-dim vectors, predicting zero scores 1/d.
        "reconstruction_mse": inference["squared_error"] / vectors.size,
        "reconstruction_mse_of_zero": inference["squares"] / vectors.size,
        # 1 - squared error / squared distance to the mean vector (1: perfect, 0: no better than the mean).
        "explained_variance": 1.0 - inference["squared_error"] / total_variance if total_variance > 0 else 0.0,
        # Energy of the latent residual left after each level, relative to the latent's energy.
        "residual_fraction_per_level": [float(value / energy[0]) if energy[0] > 0 else 0.0
                                        for value in energy[1:]],
        "history": history,
        "mode": mode,
    })
    codes = quantiser_codes
    cardinalities = [model.codebook_size] * model.num_levels
    if mode == "unique":
        codes = disambiguate(quantiser_codes)
        cardinalities.append(int(codes[:, -1].max()) + 1)
    timings["assign_seconds"] = time.perf_counter() - assign_started
    stats.update({key: float(value) for key, value in timings.items()})
    stats["seconds"] = time.perf_counter() - started
    return SemanticIdResult(codes=codes.astype(np.int32), stats=stats, model=model, mode=mode,
                            cardinalities=cardinalities)


def fit_semantic_ids(vectors: np.ndarray, config: SemanticIdConfig, seed: int,
                     progress: bool = True) -> SemanticIdResult:
    """Trains an RQ-VAE on `vectors` [n, d] and returns every row's semantic ID and the run's stats."""
    started = time.perf_counter()
    vectors = _as_matrix(vectors)
    if config.mode not in ("clusters", "unique"):
        raise ValueError(f"unknown semantic-ID mode {config.mode!r}")
    n = vectors.shape[0]
    model = build_model(vectors.shape[1], config, seed)

    init_started = time.perf_counter()
    order = np.random.default_rng(seed).permutation(n)
    init_rows = min(n, max(config.batch_size, KMEANS_POINTS_PER_CODE * config.codebook_size))
    model.initialize_codebooks(vectors[order[:init_rows]], seed=seed)
    init_seconds = time.perf_counter() - init_started

    train_started = time.perf_counter()
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    dataset = (tf.data.Dataset.from_tensor_slices(vectors)
               .shuffle(n, seed=seed, reshuffle_each_iteration=True)
               .batch(config.batch_size)
               .prefetch(2))
    monitor = CodebookMonitor(config.dead_code_reset, seed=seed, epochs=config.epochs)
    callbacks: List[tf.keras.callbacks.Callback] = [monitor]
    if progress:
        callbacks.append(_EpochProgress(config.epochs, "rq-vae"))
    fitted = model.fit(dataset, epochs=config.epochs, verbose=0, callbacks=callbacks)
    history: Dict[str, Any] = {key: [float(value) for value in values] for key, values in fitted.history.items()}
    history["usage_per_level"] = [entry["usage"] for entry in monitor.history]
    history["reseeded_per_level"] = [entry["reseeded"] for entry in monitor.history]
    timings = {"init_seconds": init_seconds, "train_seconds": time.perf_counter() - train_started}
    return _finish(model, vectors, config.mode, history, timings, started)


def fit_user_semantic_ids(user_vectors: np.ndarray, config: SemanticIdConfig, seed: int, progress: bool = True,
                          item_model: Optional[RQVAE] = None) -> SemanticIdResult:
    """Semantic IDs for users from their vectors (e.g. the mean of their history items' vectors).

    Without `item_model` a quantiser of the users' own is trained, as for items. With it, users are
    coded in the items' code space (no training), so a user's ID can be compared with items' IDs.
    """
    if item_model is None:
        return fit_semantic_ids(user_vectors, config, seed, progress=progress)
    started = time.perf_counter()
    vectors = _as_matrix(user_vectors)
    if vectors.shape[1] != item_model.input_dim:
        raise ValueError(f"user vectors have {vectors.shape[1]} dims, the quantiser expects {item_model.input_dim}")
    return _finish(item_model, vectors, config.mode, {}, {}, started)


def save_quantizer(model: RQVAE, directory: Union[str, Path]) -> Path:
    """Writes the architecture (rqvae.json) and the learned weights (a tf.train.Checkpoint).

    The files go to a temporary sibling directory that is renamed into place when complete.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with building_directory(directory) as temporary:
        (temporary / CONFIG_FILE).write_text(json.dumps(model.get_config(), indent=2), encoding="utf-8")
        _checkpoint(model).write(str(temporary / CHECKPOINT_PREFIX))
    return directory


def load_quantizer(directory: Union[str, Path]) -> RQVAE:
    """Rebuilds the RQ-VAE saved by `save_quantizer`, ready for `assign_codes`."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    model = RQVAE(**config).build_all()
    _checkpoint(model).read(str(directory / CHECKPOINT_PREFIX)).assert_consumed()
    return model


def _checkpoint(model: RQVAE) -> tf.train.Checkpoint:
    # Only what the codes depend on; the usage counts and residual buffer are training state.
    return tf.train.Checkpoint(encoder=model.encoder, decoder=model.decoder, codebooks=model.quantizer.codebooks)
