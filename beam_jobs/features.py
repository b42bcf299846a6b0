"""Semantic features: item texts -> language-model vectors (Beam RunInference), LLM-generated
texts, RQ-VAE semantic IDs -> sharded TFRecords beside the prepared dataset.

Three phases, all writing into `<target>.partial-<id>/`, renamed into place when complete:
1. Beam: read the item TFRecords, build each item's texts (title; title + genres + description;
   LLM purchase motivations when a backend is configured), encode them with RunInference and
   write intermediate vector shards.
2. Driver: user vectors (mean of their training items' vectors), EIMF explicit interests for
   typical users (Affinity Propagation over users; for exemplars only, the LLM, or without one
   the k-means centroids of their items' vectors: llm.interests_source), RQ-VAE quantisers
   fitted on item and user vectors and saved. The LLM stage runs here because its concurrency,
   retries and on-disk cache are per process; the cache makes a rerun redo only what is missing.
3. Beam: the driver's arrays are staged as .npy files and the pipeline carries only index
   ranges; DoFns memory-map them, assign semantic IDs with the saved item quantiser (so it scales
   out like the encoder) and write the final item and user shards, then the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from tfrs_llmrec._keras_env import use_legacy_keras

use_legacy_keras()

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference  # noqa: E402

from beam_jobs.ingest import (OWNER_FILE, new_partial, pipeline_options, publish,  # noqa: E402
                               remove_stale_partials, write_shards)
from tfrs_llmrec.config import config_hash, to_dict  # noqa: E402
from tfrs_llmrec.config.schema import EncoderConfig, FeaturesConfig  # noqa: E402
from tfrs_llmrec.data import ItemTable, PreparedDataset  # noqa: E402
from tfrs_llmrec.data import features_spec as fspec  # noqa: E402
from tfrs_llmrec.data import records, spec  # noqa: E402

log = logging.getLogger(__name__)

VECTORS_DIR = "_vectors"
# Phase 3's inputs as .npy files (items and users under their own subdirectory), removed once written.
STAGING_DIR = "_staging"
ITEMS_STAGING, USERS_STAGING = "items", "users"
STAGING_BATCH = 1024
TITLE, METADATA, MOTIVATION = "title", "metadata", "motivation"


def features_dir(dataset: PreparedDataset, features: FeaturesConfig, output_dir: Optional[Path] = None) -> Path:
    """Features are keyed by the dataset they describe and by their own config; they go under
    `output_dir` (default: the output directory that holds the dataset)."""
    root = Path(output_dir) if output_dir is not None else dataset.root.parent.parent
    return root / fspec.FEATURES_DIR / f"{dataset.root.name}-{config_hash(features)}"


def item_texts(title: str, genres: Sequence[str], description: str) -> Dict[str, str]:
    """The texts each semantic source encodes; metadata falls back to the title alone."""
    parts = [title]
    if genres:
        parts.append("Genres: " + ", ".join(genres))
    if description:
        parts.append(description)
    return {TITLE: title, METADATA: ". ".join(part for part in parts if part)}


class TextEncoderHandler(ModelHandler):
    """RunInference handler around our TextEncoder: batches of strings in, vectors out."""

    def __init__(self, config: EncoderConfig, batch_size: int):
        super().__init__()
        self._config = config
        self._batch_size = batch_size

    def load_model(self):
        from tfrs_llmrec.encoders import build_encoder

        return build_encoder(self._config)

    def run_inference(self, batch, model, inference_args=None) -> Iterable[PredictionResult]:
        vectors = model.encode(list(batch))
        return [PredictionResult(text, vector) for text, vector in zip(batch, vectors)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return "tfrs_llmrec_text_encoder"


def _parse_item(serialized: bytes) -> Tuple[int, Dict[str, str]]:
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    index = int(feature[spec.ITEM_INDEX].int64_list.value[0])
    title = feature[spec.TITLE].bytes_list.value[0].decode("utf-8") if feature[spec.TITLE].bytes_list.value else ""
    genres = [value.decode("utf-8") for value in feature[spec.GENRES].bytes_list.value]
    description = (feature[spec.DESCRIPTION].bytes_list.value[0].decode("utf-8")
                   if feature[spec.DESCRIPTION].bytes_list.value else "")
    return index, item_texts(title, genres, description)


def _floats(values) -> tf.train.Feature:
    return records.floats(np.asarray(values, np.float32).ravel().tolist())


def _int64s(values) -> tf.train.Feature:
    return records.int64s(np.asarray(values, np.int64).ravel().tolist())


def _vector_example(index: int, source: str, vector) -> bytes:
    return records.serialize({"index": _int64s([index]), "source": records.strings([source]),
                              "vector": _floats(vector)})


def _keyed_texts(element, motivations: Dict[int, str]):
    index, texts = element
    for source, text in texts.items():
        yield f"{index}/{source}", text
    if index in motivations:
        yield f"{index}/{MOTIVATION}", motivations[index]


def _vector_record(element, num_shards: int):
    key, result = element
    index, source = key.split("/")
    return int(index) % num_shards, ((int(index), source), _vector_example(int(index), source, result.inference))


def _encode_items(pipeline_args, dataset: PreparedDataset, features: FeaturesConfig, partial: Path,
                  motivations: Dict[int, str], num_shards: int) -> None:
    # Large RunInference batches let the encoder sort texts by length and pad little.
    handler = KeyedModelHandler(TextEncoderHandler(features.encoder, features.encoder.batch_size * 64))
    with beam.Pipeline(options=pipeline_options(pipeline_args)) as pipeline:
        records = (pipeline | "ReadItems" >> beam.io.ReadFromTFRecord(str(dataset.root / spec.ITEMS_DIR / "*.tfrecord"))
                   | "ParseItems" >> beam.Map(_parse_item)
                   | "Texts" >> beam.FlatMap(_keyed_texts, motivations)
                   | "Encode" >> RunInference(handler)
                   | "ToRecords" >> beam.Map(_vector_record, num_shards))
        write_shards(pipeline, "Vectors", records, str(partial), VECTORS_DIR, "vectors", num_shards)


def _read_vectors(partial: Path, num_items: int) -> Dict[str, np.ndarray]:
    found: Dict[str, Dict[int, np.ndarray]] = {}
    for path in sorted((partial / VECTORS_DIR).glob("*.tfrecord")):
        for serialized in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            feature = tf.train.Example.FromString(serialized).features.feature
            source = feature["source"].bytes_list.value[0].decode()
            found.setdefault(source, {})[int(feature["index"].int64_list.value[0])] = np.asarray(
                feature["vector"].float_list.value, np.float32)
    dimension = len(next(iter(found[TITLE].values())))
    vectors = {}
    for source, rows in found.items():
        matrix = np.zeros((num_items, dimension), np.float32)
        for index, vector in rows.items():
            matrix[index] = vector
        vectors[source] = matrix
    return vectors


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def user_history_vectors(dataset: PreparedDataset, item_vectors: np.ndarray) -> np.ndarray:
    """Each user's mean training-item vector, L2-normalised (zeros for a user with no items)."""
    train = dataset.split_items("train")
    users = np.zeros((len(train), item_vectors.shape[1]), np.float32)
    # Sums per user row; users without training items (the users split's held-out users) stay zero.
    rows = np.repeat(np.arange(len(train)), train.lengths())
    np.add.at(users, rows, item_vectors[train.indices])
    return _normalise(users)


def _motivations(table: ItemTable, features: FeaturesConfig, cache_dir: Path) -> Tuple[Dict[int, str], dict]:
    if features.llm.backend == "none":
        return {}, {"backend": "none"}
    from tfrs_llmrec.llm.generate import generate_item_motivations

    items = [(str(index), title, description) for index, (title, description)
             in enumerate(zip(table.titles, table.descriptions))]
    generated = generate_item_motivations(items, features.llm, cache_dir)
    texts = {int(key): "; ".join(reasons) for key, reasons in generated.items() if reasons}
    return texts, generated.report.as_dict()


# EIMF interests source -> the label the manifest gives it (llm.interests.source).
INTEREST_SOURCE_LABELS = {"llm": "llm", "item_centroids": "item_centroids (no LLM)"}
# k-means restarts per typical user for the item-centroid interests (the best inertia wins).
CENTROID_N_INIT = 10


def item_centroid_interests(item_vectors: np.ndarray, max_interests: int, seed: int) -> np.ndarray:
    """One user's explicit interests without an LLM: [k, d] float32, unit rows, largest cluster first.

    The user's training items' vectors (one row per interaction, so a repeated item weighs more)
    are clustered by scikit-learn's KMeans with k = min(max_interests, distinct vectors),
    `CENTROID_N_INIT` restarts and random_state=seed; repeated rows are passed once with their
    count as sample weight (the same clustering, without duplicate centres). Each centroid is
    L2-normalised; clusters are ordered by size (their interactions), ties in KMeans's label order.
    """
    from sklearn.cluster import KMeans

    distinct, counts = np.unique(np.asarray(item_vectors, np.float64), axis=0, return_counts=True)
    n_clusters = min(int(max_interests), len(distinct))
    kmeans = KMeans(n_clusters=n_clusters, n_init=CENTROID_N_INIT, random_state=seed)
    kmeans.fit(distinct, sample_weight=counts.astype(np.float64))
    sizes = np.bincount(kmeans.labels_, weights=counts, minlength=n_clusters)
    order = np.argsort(-sizes, kind="stable")
    return _normalise(kmeans.cluster_centers_[order].astype(np.float32))


def _user_interests(dataset: PreparedDataset, table: ItemTable, features: FeaturesConfig, user_vectors: np.ndarray,
                    item_vectors: np.ndarray, encoder, cache_dir: Path, seed: int
                    ) -> Tuple[np.ndarray, np.ndarray, dict]:
    """EIMF: interests made for typical users only (Affinity-Propagation exemplars over the users
    with training items), shared with their cluster. `features.llm.interests_source` says how:
    "llm" (the LLM writes them from the exemplar's training item titles, the text encoder encodes
    them; nothing when the backend is "none") or "item_centroids" (`item_centroid_interests` of
    the exemplar's training `item_vectors`, no LLM). The report says which source produced them."""
    max_interests = features.llm.max_interests
    dimension = user_vectors.shape[1]
    matrices = np.zeros((len(user_vectors), max_interests, dimension), np.float32)
    counts = np.zeros(len(user_vectors), np.int64)
    source = features.llm.interests_source
    if source == "llm" and features.llm.backend == "none":
        return matrices, counts, {"backend": "none", "source": "none"}
    from tfrs_llmrec.clustering import select_typical_users

    active = np.flatnonzero(np.linalg.norm(user_vectors, axis=1) > 0)
    typical = select_typical_users(user_vectors[active], features.llm.ap_max_users,
                                   preference=features.llm.ap_preference, damping=features.llm.ap_damping, seed=seed)
    exemplars = active[typical.exemplar_users]
    train = dataset.split_items("train")
    if source == "item_centroids":
        from tqdm.auto import tqdm

        for user in tqdm(exemplars, desc="item-centroid interests", unit="typical user"):
            interests = item_centroid_interests(item_vectors[train.row(user)], max_interests, seed)
            matrices[user, :len(interests)] = interests
            counts[user] = len(interests)
        report = {"backend": features.llm.backend, "item_vectors": METADATA, "kmeans_n_init": CENTROID_N_INIT}
    else:
        from tfrs_llmrec.llm.generate import generate_user_interests

        titles = table.titles
        histories = {str(user): [titles[item] for item in train.row(user)] for user in exemplars}
        generated = generate_user_interests(histories, features.llm, cache_dir)
        for user in exemplars:
            interests = (generated.get(str(user)) or [])[:max_interests]
            if interests:
                matrices[user, :len(interests)] = encoder.encode(interests)
                counts[user] = len(interests)
        report = generated.report.as_dict()
    owners = exemplars[typical.assignment]
    matrices[active], counts[active] = matrices[owners], counts[owners]
    ap = typical.ap
    report.update({"source": INTEREST_SOURCE_LABELS[source], "typical_users": int(len(exemplars)),
                   "clustered_users": int(len(active)),
                   "affinity_propagation": {"sampled_users": int(len(typical.sampled)), "iterations": ap.iterations,
                                            "converged": ap.converged, "fallback": ap.fallback,
                                            "damping": ap.damping, "note": ap.note}})
    return matrices, counts, report


def _stage(directory: Path, arrays: Dict[str, np.ndarray]) -> str:
    """Saves phase 3's inputs as .npy files in `directory`; its DoFns memory-map them and get only
    index ranges from the pipeline. Beam's Create of the rows themselves costs about 10-30 ms per
    8 KB element on the FnApiRunner (21 of the 40 minutes of Amazon's features build), and would
    put every vector into the pipeline graph on a remote runner."""
    directory.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(directory / f"{name}.npy", array)
    return str(directory)


def _index_ranges(count: int) -> List[Tuple[int, int]]:
    return [(start, min(start + STAGING_BATCH, count)) for start in range(0, count, STAGING_BATCH)]


class _StagedRows(beam.DoFn):
    """Memory-maps the staged arrays once per worker; subclasses turn an index range into
    (shard, (index, serialized example)) pairs."""

    def __init__(self, staging_dir: str, num_shards: int):
        self._staging_dir = staging_dir
        self._num_shards = num_shards
        self._arrays: Dict[str, np.ndarray] = {}

    def setup(self):
        self._arrays = {path.stem: np.load(path, mmap_mode="r") for path in Path(self._staging_dir).glob("*.npy")}

    def _rows(self, index_range: Tuple[int, int]) -> Tuple[range, Dict[str, np.ndarray]]:
        """The range's indices and every staged array's rows for them, read into memory."""
        start, stop = index_range
        return range(start, stop), {name: np.asarray(array[start:stop]) for name, array in self._arrays.items()}


class _ItemExamples(_StagedRows):
    """Codes a range of items with the saved item quantiser (loaded once per worker) and
    serialises their feature rows."""

    def __init__(self, staging_dir: str, quantizer_dir: str, num_shards: int):
        super().__init__(staging_dir, num_shards)
        self._quantizer_dir = quantizer_dir
        self._model = None

    def setup(self):
        from tfrs_llmrec.semantic_ids import load_quantizer

        super().setup()
        self._model = load_quantizer(self._quantizer_dir)

    def process(self, index_range):
        from tfrs_llmrec.semantic_ids import assign_codes

        indices, staged = self._rows(index_range)
        codes = assign_codes(self._model, staged["sid"])
        if "unique_level" in staged:
            codes = np.concatenate([codes, staged["unique_level"][:, None]], axis=1)
        for offset, index in enumerate(indices):
            has_motivation = bool(staged["has_motivation"][offset])
            example = records.serialize({
                spec.ITEM_INDEX: _int64s([index]),
                fspec.TITLE_VECTOR: _floats(staged["title"][offset]),
                fspec.METADATA_VECTOR: _floats(staged["metadata"][offset]),
                fspec.MOTIVATION_VECTOR: _floats(staged["motivation"][offset] if has_motivation
                                                 else np.zeros_like(staged["title"][offset])),
                fspec.HAS_MOTIVATION: _int64s([has_motivation]),
                fspec.SEMANTIC_ID: _int64s(codes[offset]),
                fspec.TEXT_SHA256: records.strings([str(staged["text_hash"][offset])]),
            })
            yield index % self._num_shards, (index, example)


class _UserExamples(_StagedRows):
    """Serialises a range of users' rows: history vector, explicit interests, semantic ID."""

    def process(self, index_range):
        indices, staged = self._rows(index_range)
        for offset, index in enumerate(indices):
            count = int(staged["interest_counts"][offset])
            example = records.serialize({
                spec.USER_INDEX: _int64s([index]), fspec.HISTORY_VECTOR: _floats(staged["history"][offset]),
                fspec.INTERESTS: _floats(staged["interests"][offset][:count]), fspec.NUM_INTERESTS: _int64s([count]),
                fspec.SEMANTIC_ID: _int64s(staged["codes"][offset])})
            yield index % self._num_shards, (index, example)


def _text_hashes(table: ItemTable) -> List[str]:
    return [hashlib.sha256(item_texts(title, genres, description)[METADATA].encode("utf-8")).hexdigest()[:16]
            for title, genres, description in zip(table.titles, table.genres, table.descriptions)]


def run_features(features: FeaturesConfig, dataset: PreparedDataset, seed: int, pipeline_args: Sequence[str] = (),
                 sid_source: str = METADATA, force: bool = False, output_dir: Optional[Path] = None) -> Path:
    """Builds (or reuses) the semantic features of `dataset` under `output_dir` (see
    `features_dir`); returns their directory."""
    from tfrs_llmrec.encoders import build_encoder
    from tfrs_llmrec.semantic_ids import fit_semantic_ids, fit_user_semantic_ids, save_quantizer
    from tfrs_llmrec.semantic_ids.collaborative import (cluster_pair_agreement, co_occurrence_pairs,
                                                        collaborative_projection, held_out_pairs)

    started = time.perf_counter()
    target = features_dir(dataset, features, output_dir)
    if (target / spec.MANIFEST_FILE).is_file() and not force:
        log.info("reusing the semantic features %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    partial = new_partial(target)
    num_shards = int(dataset.manifest["data_config"]["num_shards"])
    cache_dir = Path(features.llm.cache_dir) if features.llm.cache_dir else dataset.root.parent.parent / "llm_cache"
    timings: Dict[str, float] = {}

    phase = time.perf_counter()
    table = dataset.item_table()
    motivations, motivation_report = _motivations(table, features, cache_dir)
    timings["llm_motivations"] = time.perf_counter() - phase
    phase = time.perf_counter()
    log.info("encoding item texts with %s (Beam RunInference)", features.encoder.kind)
    _encode_items(pipeline_args, dataset, features, partial, motivations, num_shards)
    vectors = _read_vectors(partial, dataset.num_items)
    timings["encode_items"] = time.perf_counter() - phase

    phase = time.perf_counter()
    encoder = build_encoder(features.encoder)
    users = user_history_vectors(dataset, vectors[METADATA])
    interests, interest_counts, interest_report = _user_interests(dataset, table, features, users, vectors[METADATA],
                                                                  encoder, cache_dir, seed)
    timings["user_vectors_and_interests"] = time.perf_counter() - phase

    phase = time.perf_counter()
    sid_vectors = vectors[sid_source] if sid_source in vectors else vectors[METADATA]
    train_timelines = dataset.split_items("train")
    pairs = co_occurrence_pairs(train_timelines.indptr, train_timelines.indices)
    collaborative_report = None
    if features.semantic_ids.collaborative.enabled:
        projection = collaborative_projection(sid_vectors, pairs, features.semantic_ids.collaborative, seed)
        sid_vectors, collaborative_report = projection.vectors, projection.stats
        log.info("collaborative projection on %d co-occurrence pairs: held-out pair cosine %.3f -> %.3f",
                 len(pairs), collaborative_report["held_out_pair_cosine"]["before"],
                 collaborative_report["held_out_pair_cosine"]["after"])
    item_sids = fit_semantic_ids(sid_vectors, features.semantic_ids, seed=seed)
    # What the top-level clusters capture of co-occurrence (on the pairs the projection never saw).
    item_sids.stats["top_level_pair_agreement"] = cluster_pair_agreement(item_sids.codes[:, 0],
                                                                         held_out_pairs(pairs, seed)[1])
    user_sids = fit_user_semantic_ids(users, features.semantic_ids, seed=seed)
    save_quantizer(item_sids.model, partial / "rqvae_items")
    save_quantizer(user_sids.model, partial / "rqvae_users")
    timings["rqvae"] = time.perf_counter() - phase

    has_motivation = np.zeros(dataset.num_items, bool)
    if MOTIVATION in vectors:
        has_motivation[np.fromiter(motivations, np.int64, len(motivations))] = True
    item_arrays = {"title": vectors[TITLE], "metadata": vectors[METADATA], "sid": sid_vectors,
                   "motivation": vectors.get(MOTIVATION, np.zeros_like(vectors[TITLE])),
                   "has_motivation": has_motivation, "text_hash": np.array(_text_hashes(table))}
    if features.semantic_ids.mode == "unique":
        item_arrays["unique_level"] = item_sids.codes[:, -1].astype(np.int64)
    phase = time.perf_counter()
    item_staging = _stage(partial / STAGING_DIR / ITEMS_STAGING, item_arrays)
    user_staging = _stage(partial / STAGING_DIR / USERS_STAGING,
                          {"history": users, "interests": interests, "interest_counts": interest_counts,
                           "codes": user_sids.codes})
    with beam.Pipeline(options=pipeline_options(pipeline_args)) as pipeline:
        items = (pipeline | "ItemRanges" >> beam.Create(_index_ranges(dataset.num_items))
                 | "ItemExamples" >> beam.ParDo(_ItemExamples(item_staging, str(partial / "rqvae_items"), num_shards)))
        write_shards(pipeline, "ItemFeatures", items, str(partial), fspec.ITEMS_SUBDIR, "items", num_shards)
        user_records = (pipeline | "UserRanges" >> beam.Create(_index_ranges(len(users)))
                        | "UserExamples" >> beam.ParDo(_UserExamples(user_staging, num_shards)))
        write_shards(pipeline, "UserFeatures", user_records, str(partial), fspec.USERS_SUBDIR, "users", num_shards)
    timings["write"] = time.perf_counter() - phase

    for scratch in (VECTORS_DIR, STAGING_DIR):
        tf.io.gfile.rmtree(str(partial / scratch))
    (partial / OWNER_FILE).unlink()
    manifest = {
        "dataset": str(dataset.root), "dataset_config_hash": dataset.stats.get("config_hash"),
        "features_config_hash": config_hash(features), "features_config": to_dict(features),
        "encoder": encoder.identity, "dimension": int(encoder.dimension), "sid_source": sid_source,
        "item_sid_levels": int(item_sids.codes.shape[1]), "user_sid_levels": int(user_sids.codes.shape[1]),
        "item_semantic_ids": _json_safe(item_sids.stats), "user_semantic_ids": _json_safe(user_sids.stats),
        "collaborative_projection": _json_safe(collaborative_report),
        "llm": {"motivations": motivation_report, "interests": interest_report,
                "max_interests": features.llm.max_interests},
        "num_items": dataset.num_items, "num_users": dataset.num_users, "num_shards": num_shards,
        "seed": seed, "beam_version": beam.__version__, "seconds": {k: round(v, 2) for k, v in timings.items()},
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    (partial / spec.MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    publish(partial, target, force)
    log.info("semantic features written to %s in %.1fs", target, manifest["total_seconds"])
    return target


def _json_safe(stats: dict) -> dict:
    return json.loads(json.dumps(stats, default=lambda value: value.tolist() if hasattr(value, "tolist") else str(value)))
