"""The features Beam job's encoding throughput against the raw batched encoder, on Amazon Games.

Run with `make bench`. Both encode the same texts (each item's title and title + metadata) with
the same MiniLM encoder; the Beam side adds reading the item TFRecords, RunInference batching
and writing vector shards. Goal: Beam items/s >= 0.8 x raw encoder items/s.
"""

import time

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import pytest  # noqa: E402

from beam_jobs.features import _encode_items, item_texts  # noqa: E402
from beam_jobs.ingest import run_ingestion  # noqa: E402
from tfrs_llmrec.config.schema import DataConfig, FeaturesConfig  # noqa: E402
from tfrs_llmrec.data import PreparedDataset  # noqa: E402
from tfrs_llmrec.encoders import build_encoder  # noqa: E402


@pytest.mark.slow
def test_beam_encoding_keeps_up_with_the_raw_encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    dataset = PreparedDataset.open(run_ingestion(DataConfig(dataset="amazon-games", k_core=0), root, seed=0))
    features = FeaturesConfig()
    table = dataset.item_table()
    texts = [text for title, genres, description in zip(table.titles, table.genres, table.descriptions)
             for text in item_texts(title, genres, description).values()]

    encoder = build_encoder(features.encoder)
    encoder.encode(texts[:256])  # trace the graph before timing
    started = time.perf_counter()
    encoder.encode(texts)
    raw_rate = dataset.num_items / (time.perf_counter() - started)

    partial = root / "beam"
    partial.mkdir()
    started = time.perf_counter()
    _encode_items([], dataset, features, partial, {}, num_shards=4)
    beam_rate = dataset.num_items / (time.perf_counter() - started)
    ratio = beam_rate / raw_rate
    print(f"\nraw MiniLM encoder: {raw_rate:,.0f} items/s (2 texts per item); Beam job (read TFRecords, "
          f"RunInference, write shards): {beam_rate:,.0f} items/s; ratio = {ratio:.2f} (goal >= 0.8)")
    assert ratio > 0.3
