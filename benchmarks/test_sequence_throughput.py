"""Training throughput of the sequential and multi-interest retrievers against our ID two-tower, at
Amazon-Games-like sizes.

Run with `make bench`, or `.venv/bin/python -m pytest -m slow -s benchmarks/test_sequence_throughput.py`.
Six models train side by side in one run, on the same precomputed batches, with the settings of
configs/amazon_games_{sequence,sasrec,mind,comirec_sa,remi,eimf}.yaml: width d = 64, batch 1,024,
histories of length 50, the sampled softmax with 256 uniformly sampled negatives (plus in-batch
ones, logQ, accidental-hit removal) at temperature 0.05, K = 4 interests:

- "TwoTowerModel": ours, the family's baseline, whose query tower pools the history's item-ID
  embeddings (no user ID);
- "SASRec": 2 causal self-attention blocks, 1 head, dropout 0.2;
- "MIND": B2I routing (3 iterations), label-aware readout (power 2);
- "ComiRec-SA": self-attentive extraction, argmax readout;
- "REMI": MIND's routing backbone with argmax readout, interest-aware hard negatives (beta 1) and
  the routing regulariser (lambda 0.1);
- "EIMF": ComiRec-SA backbone with the explicit-interest tasks (gamma 0.1, target-aware attention,
  semantic prediction and alignment) over 5 explicit interests of 384-d per user, the users
  sharing their Affinity-Propagation exemplar's set (NUM_EXEMPLARS distinct sets here), and
  384-d item vectors.

Sizes follow Amazon Video Games: 50,546 users, 16,856 items, long-tailed item popularity; the item
vectors and explicit interests are random normal, L2-normalised. Two history settings, both padded
with -1 to length 50: "Amazon-like", about 6 real items per row (geometric lengths, as
benchmarks/test_motir_step_time.py), and "MovieLens-like", about 40 (uniform 30..50). Every layer
here (pooling, causal attention, routing, self-attentive heads) is dense over the 50 padded
positions with masks, so the layers' arithmetic does not grow with the real length. What does
depend on it is applying the sparse item-embedding gradient (Adam's sparse update: every padded
position looks up row 0, real ones spread over the catalogue); for the two-tower, forward and
backward alone measured 13.0 vs 14.4 ms, the full step 24 vs 33 ms. That update weighs most on
the cheapest models (the two-tower, then the routing ones). The "/ Amazon-like" column of the second
setting shows how much; the setting costs no retrace: it feeds the same compiled train step from a
second iterator.

Each model's step is Keras's own compiled train step (`model.fit` once to trace and warm up, then
`model.train_function` on an iterator). Rounds interleave the (model, setting) blocks in a rotating
order so that load from other processes on the machine hits all of them alike; per model and
setting the median ms/step over rounds is printed with examples/s (batch / median step), and each
ratio is the median of the per-round ratios (paired within a round). Only sanity is asserted
(finite positive times, finite losses).
"""

import statistics
import time

import tfrs_llmrec  # noqa: F401  (Keras 2 before TensorFlow)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrs_llmrec.config.schema import ModelConfig, TowerConfig  # noqa: E402
from tfrs_llmrec.models.registry import ModelInputs, build_model  # noqa: E402
from step_timing import interleaved_step_times, paired_ratio  # noqa: E402  (benchmarks/ is on sys.path under pytest)
from synthetic import geometric_lengths, long_tailed_popularity, training_batches  # noqa: E402

NUM_USERS = 50_546
NUM_ITEMS = 16_856
SEMANTIC_DIM = 384
DIM = 64
BATCH_SIZE = 1_024
MAX_HISTORY = 50
NUM_NEGATIVES = 256
TEMPERATURE = 0.05
NUM_INTERESTS = 4
EXPLICIT_INTERESTS = 5
NUM_EXEMPLARS = 1_000
# History settings: the mean number of real items per row.
AMAZON_MEAN_HISTORY = 6.0
MOVIELENS_HISTORY_RANGE = (30, 50)  # uniform, mean 40
NUM_BATCHES = 8
WARMUP_STEPS = 2
STEPS_PER_BLOCK = 5
ROUNDS = 9
SEED = 0

# Display name -> (registry name, config.sequence overrides), as in configs/amazon_games_*.yaml.
MODELS = {
    "TwoTowerModel": ("two_tower", {}),
    "SASRec": ("sasrec", dict(num_blocks=2, num_heads=1, dropout=0.2)),
    "MIND": ("mind", dict(routing_iterations=3, readout="label_aware", label_aware_power=2.0)),
    "ComiRec-SA": ("comirec_sa", dict(readout="argmax")),
    "REMI": ("remi", dict(routing_iterations=3, readout="argmax", hard_negative_beta=1.0, routing_regularization=0.1)),
    "EIMF": ("eimf", dict(readout="argmax")),
}
BASELINE = "TwoTowerModel"
SETTINGS = ("Amazon-like", "MovieLens-like")


def synthetic_batches(setting: str, seed: int):
    """NUM_BATCHES batches of (user, positive item, history), the items' training counts and the
    mean real history length."""
    # The same long-tailed popularity for both settings.
    popularity = long_tailed_popularity(np.random.default_rng(SEED), NUM_ITEMS)
    if setting == "Amazon-like":
        lengths_of = geometric_lengths(AMAZON_MEAN_HISTORY, MAX_HISTORY)
    else:
        low, high = MOVIELENS_HISTORY_RANGE
        lengths_of = lambda rng, rows: rng.integers(low, high + 1, size=rows)  # noqa: E731
    return training_batches(np.random.default_rng(seed), popularity, NUM_USERS, lengths_of, NUM_BATCHES, BATCH_SIZE,
                            MAX_HISTORY)


def config_for(name: str, sequence: dict) -> ModelConfig:
    config = ModelConfig(name=name, tower=TowerConfig(dim=DIM, use_user_id=False), temperature=TEMPERATURE,
                         num_sampled_negatives=NUM_NEGATIVES)
    config.sequence.num_interests = NUM_INTERESTS
    for key, value in sequence.items():
        setattr(config.sequence, key, value)
    if name == "eimf":  # configs/amazon_games_eimf.yaml
        config.eimf.backbone = "comirec_sa"
        config.eimf.gamma, config.eimf.alpha, config.eimf.beta, config.eimf.temperature = 0.1, 0.25, 0.25, 0.1
    return config


def unit_rows(rng, shape):
    vectors = rng.normal(size=shape).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def model_inputs(counts) -> ModelInputs:
    rng = np.random.default_rng(SEED + 1)
    item_vectors = unit_rows(rng, (NUM_ITEMS, SEMANTIC_DIM))
    # Users share their exemplar's interests; EimfModel keeps each distinct set once.
    exemplar_sets = unit_rows(rng, (NUM_EXEMPLARS, EXPLICIT_INTERESTS, SEMANTIC_DIM))
    user_interests = exemplar_sets[rng.integers(0, NUM_EXEMPLARS, NUM_USERS)]
    interest_counts = np.full(NUM_USERS, EXPLICIT_INTERESTS, np.int64)
    return ModelInputs(num_users=NUM_USERS, item_train_counts=counts, item_vectors=item_vectors, seed=SEED,
                       max_history=MAX_HISTORY, user_interests=(user_interests, interest_counts))


def build_models(counts):
    inputs = model_inputs(counts)
    models = {}
    for display, (name, sequence) in MODELS.items():
        models[display] = build_model(name, config_for(name, sequence), inputs)
        models[display].compile(tf.keras.optimizers.Adam(1e-3))
    return models


@pytest.mark.slow
def test_sequence_model_throughput_against_two_tower():
    started = time.perf_counter()
    datasets, mean_lengths = {}, {}
    for offset, setting in enumerate(SETTINGS):
        features, counts, mean_lengths[setting] = synthetic_batches(setting, SEED + 10 + offset)
        if setting == SETTINGS[0]:
            train_counts = counts  # the models' logQ counts: the Amazon-like batches'
        datasets[setting] = tf.data.Dataset.from_tensor_slices(features).repeat().prefetch(tf.data.AUTOTUNE)
    models = build_models(train_counts)
    build_s = time.perf_counter() - started

    iterators, trace_s = {}, {}
    for name, model in models.items():
        trace_started = time.perf_counter()
        model.fit(datasets[SETTINGS[0]], steps_per_epoch=WARMUP_STEPS, epochs=1, verbose=0)  # traces, warms up
        trace_s[name] = time.perf_counter() - trace_started
        for setting in SETTINGS:
            iterators[name, setting] = iter(datasets[setting])
            model.train_function(iterators[name, setting])  # the first batch, outside the timings

    units = [(name, setting) for name in models for setting in SETTINGS]
    step_s, losses = interleaved_step_times(
        {(name, setting): (models[name].train_function, iterators[name, setting]) for name, setting in units},
        ROUNDS, STEPS_PER_BLOCK)

    def ratio(numerator, denominator) -> float:
        return paired_ratio(step_s, numerator, denominator)

    print(f"\nAmazon-Games-like sizes: {NUM_USERS:,} users, {NUM_ITEMS:,} items, d={DIM}, batch {BATCH_SIZE:,}, "
          f"history length {MAX_HISTORY}, {NUM_NEGATIVES} sampled negatives, temperature {TEMPERATURE}, "
          f"K={NUM_INTERESTS} interests; EIMF: {EXPLICIT_INTERESTS} explicit interests x {SEMANTIC_DIM}-d per user "
          f"({NUM_EXEMPLARS:,} distinct sets); {ROUNDS} interleaved rounds x {STEPS_PER_BLOCK} steps per model "
          f"and setting")
    for setting in SETTINGS:
        print(f"\n{setting} histories (mean {mean_lengths[setting]:.1f} real items of {MAX_HISTORY})")
        header = f"{'model':<15}{'ms/step':>9}{'min':>9}{'max':>9}{'examples/s':>12}{'/ ' + BASELINE:>17}"
        if setting != SETTINGS[0]:
            header += f"{'/ ' + SETTINGS[0]:>15}"
        print(header + f"{'trace s':>9}{'last loss':>11}")
        for name in models:
            unit = (name, setting)
            times = [seconds * 1e3 for seconds in step_s[unit]]
            median_s = statistics.median(step_s[unit])
            line = (f"{name:<15}{median_s * 1e3:9.1f}{min(times):9.1f}{max(times):9.1f}"
                    f"{BATCH_SIZE / median_s:12,.0f}{ratio(unit, (BASELINE, setting)):17.2f}")
            if setting != SETTINGS[0]:
                line += f"{ratio(unit, (name, SETTINGS[0])):15.2f}"
            print(line + f"{trace_s[name]:9.1f}{losses[unit][-1]:11.3f}")
    print(f"\nbuilding the models took {build_s:.0f} s; benchmark took {time.perf_counter() - started:.0f} s")

    for unit in units:
        assert all(np.isfinite(seconds) and seconds > 0 for seconds in step_s[unit]), unit
        assert all(np.isfinite(loss) for loss in losses[unit]), unit
