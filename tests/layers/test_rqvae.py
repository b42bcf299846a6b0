import numpy as np
import pytest
import tensorflow as tf

from tfrs_llmrec.layers.rqvae import RQVAE, CodebookMonitor, ResidualQuantizer, kmeans

BETA = 0.25


def quantizer_with(codebooks, commitment_weight=BETA):
    codebooks = np.asarray(codebooks, np.float32)
    quantizer = ResidualQuantizer(codebooks.shape[0], codebooks.shape[1], commitment_weight=commitment_weight)
    quantizer.build([None, codebooks.shape[2]])
    quantizer.codebooks.assign(codebooks)
    return quantizer


TWO_LEVELS = [[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]],
              [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]]
INPUTS = [[9.0, 1.5], [0.2, 9.1], [-1.1, 0.3]]


def test_quantizer_picks_the_nearest_code_at_each_level():
    output = quantizer_with(TWO_LEVELS)(tf.constant(INPUTS))
    # Level 0: [10,0], [0,10], [0,0]; what is left: [-1,1.5], [0.2,-0.9], [-1.1,0.3];
    # level 1: [0,1] (1.25 vs 6.25, 2.25), [1,0] (1.45 vs 3.65, 2.25), [-1,0] (0.1 vs 4.5, 1.7).
    np.testing.assert_array_equal(output.codes.numpy(), [[1, 1], [2, 0], [0, 2]])
    assert output.codes.dtype == tf.int32
    np.testing.assert_allclose(output.residuals.numpy()[:, 0], INPUTS)
    np.testing.assert_allclose(output.residuals.numpy()[:, 1], [[-1.0, 1.5], [0.2, -0.9], [-1.1, 0.3]], atol=1e-6)
    np.testing.assert_allclose(output.quantized.numpy(), [[10.0, 1.0], [1.0, 10.0], [-1.0, 0.0]], atol=1e-6)
    # Each level: (1 + beta) * mean squared norm of (residual - code); final residuals [-1,.5], [-.8,-.9], [-.1,.3].
    expected = [(1 + BETA) * (3.25 + 0.85 + 1.3) / 3, (1 + BETA) * (1.25 + 1.45 + 0.1) / 3]
    np.testing.assert_allclose(output.level_losses.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(output.quantization_loss.numpy(), output.level_losses.numpy().sum(), rtol=1e-6)


def test_losses_and_their_gradients_by_hand():
    quantizer = quantizer_with([[[1.0, 0.0], [0.0, 2.0]]])
    inputs = tf.Variable([[2.0, 0.0], [0.0, 1.5]])
    with tf.GradientTape(persistent=True) as tape:
        output = quantizer(inputs)
    np.testing.assert_array_equal(output.codes.numpy(), [[0], [1]])
    # Squared errors 1 and 0.25, mean 0.625; codebook term + 0.25 * commitment term.
    np.testing.assert_allclose(output.quantization_loss.numpy(), 0.625 * (1 + BETA), rtol=1e-6)
    # d/d code_k of mean_b ||sg(r_b) - e_k||^2 = (2 / B) * (e_k - r_k) = e_k - r_k here.
    np.testing.assert_allclose(tape.gradient(output.quantization_loss, quantizer.codebooks).numpy()[0],
                               [[-1.0, 0.0], [0.0, 0.5]], atol=1e-6)
    # Only the commitment term reaches the input: beta * (r - e).
    np.testing.assert_allclose(tape.gradient(output.quantization_loss, inputs).numpy(),
                               BETA * np.array([[1.0, 0.0], [0.0, -0.5]]), atol=1e-6)


def test_model_loss_is_reconstruction_plus_quantization():
    model = RQVAE(input_dim=3, latent_dim=2, hidden_dims=[4], num_levels=2, codebook_size=3, seed=3).build_all()
    inputs = np.array([[0.6, 0.8, 0.0], [0.0, 0.6, -0.8]], np.float32)
    losses = model.compute_losses(tf.constant(inputs))
    latent = model.encoder(inputs)
    reconstruction = model.decoder(model.quantizer(latent).quantized).numpy()
    expected_reconstruction = np.mean(np.sum((inputs - reconstruction) ** 2, axis=1))
    np.testing.assert_allclose(losses["reconstruction"].numpy(), expected_reconstruction, rtol=1e-5)
    np.testing.assert_allclose(losses["loss"].numpy(), expected_reconstruction + losses["quantization"].numpy(),
                               rtol=1e-5)


def test_straight_through_gradient_reaches_the_encoder_unchanged():
    model = RQVAE(input_dim=5, latent_dim=3, hidden_dims=[6], num_levels=2, codebook_size=4, seed=1).build_all()
    inputs = tf.constant(np.random.default_rng(0).normal(size=(7, 5)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        latent = model.encoder(inputs)
        output = model.quantizer(latent)
        reconstruction = model.decoder(output.quantized)
        loss = tf.reduce_mean(tf.reduce_sum(tf.square(inputs - reconstruction), axis=1))
    to_latent, to_quantized = tape.gradient(loss, [latent, output.quantized])
    assert float(tf.reduce_max(tf.abs(to_quantized))) > 0
    np.testing.assert_allclose(to_latent.numpy(), to_quantized.numpy(), rtol=1e-6, atol=1e-7)
    # The reconstruction does not move the codebooks; their own loss does.
    assert tape.gradient(loss, model.quantizer.codebooks) is None


def separated_clusters(num_clusters, per_cluster, dim, scale, noise, seed):
    rng = np.random.default_rng(seed)
    centres = scale * rng.normal(size=(num_clusters, dim))
    labels = np.repeat(np.arange(num_clusters), per_cluster)
    return centres, labels, centres[labels] + noise * rng.normal(size=(labels.size, dim))


def test_kmeans_finds_the_centres_of_separated_clusters():
    centres, _, points = separated_clusters(6, 40, 5, scale=10.0, noise=0.1, seed=0)
    found = kmeans(points, 6, seed=4)
    distances = np.linalg.norm(found[:, None] - centres[None], axis=-1)
    assert sorted(np.argmin(distances, axis=1).tolist()) == list(range(6))  # one code per cluster
    assert distances.min(axis=1).max() < 0.1
    np.testing.assert_array_equal(found, kmeans(points, 6, seed=4))  # seeded


def test_kmeans_with_more_clusters_than_points_repeats_points():
    points = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    found = kmeans(points, 5, seed=0)
    assert found.shape == (5, 2)
    assert all(any(np.allclose(code, point) for point in points) for code in found)


def test_codebook_initialisation_puts_level_zero_codes_at_latent_cluster_centres():
    _, labels, points = separated_clusters(4, 50, 6, scale=3.0, noise=0.05, seed=1)
    model = RQVAE(input_dim=6, latent_dim=5, hidden_dims=[16], num_levels=2, codebook_size=4, seed=0).build_all()
    model.initialize_codebooks(points.astype(np.float32), seed=0)
    latent = model.encoder(points.astype(np.float32)).numpy()
    means = np.stack([latent[labels == k].mean(axis=0) for k in range(4)])
    codes = model.quantizer.codebooks.numpy()
    distances = np.linalg.norm(codes[0][:, None] - means[None], axis=-1)
    assert sorted(np.argmin(distances, axis=1).tolist()) == [0, 1, 2, 3]
    spread = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances.min(axis=1).max() < 0.01 * spread[spread > 0].min()
    # Level 1 is fitted to what is left, which is small next to the cluster centres.
    assert np.linalg.norm(codes[1], axis=1).max() < 0.2 * np.linalg.norm(codes[0], axis=1).mean()


def test_reset_moves_only_dead_codes_onto_buffered_residuals():
    quantizer = quantizer_with([[[0.0, 0.0], [50.0, 50.0], [60.0, 60.0]]])
    inputs = tf.constant(np.random.default_rng(0).normal(size=(10, 2)), tf.float32)
    output = quantizer(inputs)
    quantizer.record(output.codes, output.residuals)
    assert quantizer.usage_fractions() == [pytest.approx(1 / 3)]
    assert quantizer.reset_dead_codes(np.random.default_rng(0)) == [2]
    codes = quantizer.codebooks.numpy()[0]
    np.testing.assert_array_equal(codes[0], [0.0, 0.0])
    for code in codes[1:]:
        assert np.min(np.linalg.norm(inputs.numpy() - code, axis=1)) < 1e-6
    assert not np.allclose(codes[1], codes[2])


def test_reservoir_keeps_the_latest_rows():
    quantizer = ResidualQuantizer(1, 2, reservoir_size=4)
    quantizer.build([None, 1])
    for start in (0, 3):
        rows = tf.constant(np.arange(start, start + 3, dtype=np.float32).reshape(3, 1, 1))
        quantizer.record(tf.zeros([3, 1], tf.int32), rows)
    assert int(quantizer.reservoir_filled.numpy()) == 4
    assert sorted(quantizer.reservoir.numpy().ravel().tolist()) == [2.0, 3.0, 4.0, 5.0]


def train_with_dead_codes(reset):
    _, _, points = separated_clusters(4, 64, 8, scale=1.0, noise=0.05, seed=2)
    model = RQVAE(input_dim=8, latent_dim=4, hidden_dims=[8], num_levels=1, codebook_size=8, seed=0).build_all()
    latent = model.encoder(points.astype(np.float32)).numpy()
    codebook = np.full((1, 8, 4), 100.0, np.float32)  # seven codes far from every latent
    codebook[0, 0] = latent.mean(axis=0)
    model.quantizer.codebooks.assign(codebook)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    monitor = CodebookMonitor(reset_dead_codes=reset, seed=0, epochs=3)
    model.fit(tf.data.Dataset.from_tensor_slices(points.astype(np.float32)).batch(64), epochs=3, verbose=0,
              callbacks=[monitor])
    return monitor.history


def test_dead_code_reset_revives_unused_codes():
    history = train_with_dead_codes(reset=True)
    assert history[0]["usage"] == [1 / 8]
    assert history[0]["reseeded"] == [7]
    assert history[1]["usage"][0] > 0.5
    assert history[2]["reseeded"] == [0]  # nothing moves after the last epoch
    frozen = train_with_dead_codes(reset=False)
    assert [entry["usage"] for entry in frozen] == [[1 / 8]] * 3
