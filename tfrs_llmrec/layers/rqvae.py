"""RQ-VAE: an MLP autoencoder whose latent passes through a residual vector quantiser.

The encoder maps a semantic vector x to a latent z. Level 0 of the quantiser picks the code of
its codebook nearest to r_0 = z; every later level quantises what is left,
r_{l+1} = r_l - e_l. The tuple of picked indices is the item's semantic ID and the sum of the
picked codes, z_q, is what the decoder sees. z_q is passed on with a straight-through estimator
(z + stop_gradient(z_q - z)), so the reconstruction gradient reaches the encoder unchanged.

Losses, each a mean over the rows of a batch of squared L2 norms:

- reconstruction: ||x - decoder(z_q)||^2;
- per level l: ||sg(r_l) - e_l||^2 (moves the codebook) + commitment_weight * ||r_l - sg(e_l)||^2
  (keeps the encoder near its codes). Residuals are formed with sg(e_l), so level l's codebook
  learns only from its own term.

Codebooks start from k-means (greedy k-means++ seeding, then Lloyd) over the latents of a first
sample, level by level on the residuals. During training the quantiser counts how often each code
is picked and buffers the latest residuals of every level; `reset_dead_codes` moves codes that went
unused since the last count reset onto random buffered residuals of their level, drawn in
proportion to their squared distance to the nearest live code (`CodebookMonitor` does this at the
end of each epoch under `fit`).

Everything random takes a seed (initialisers, k-means, resets), so a run is reproducible without
touching TensorFlow's global seed.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_llmrec.layers.mlp import MLP


def _squared_distances(points: np.ndarray, centres: np.ndarray, point_norms: Optional[np.ndarray] = None):
    """[n, k] squared L2 distances, clipped at zero against rounding."""
    if point_norms is None:
        point_norms = np.einsum("ij,ij->i", points, points)
    distances = point_norms[:, None] - 2.0 * points @ centres.T + np.einsum("ij,ij->i", centres, centres)[None]
    return np.maximum(distances, 0.0)


def kmeans(points: np.ndarray, num_clusters: int, seed: int, iterations: int = 30) -> np.ndarray:
    """Greedy k-means++ seeding followed by Lloyd iterations; returns float32 centres [num_clusters, d].

    With fewer distinct points than clusters some centres repeat (the quantiser's dead-code reset
    moves them later). An empty cluster is re-seeded at the point farthest from its centre.
    """
    data = np.asarray(points, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [n, d] array, got shape {data.shape}")
    rng = np.random.default_rng(seed)
    n = data.shape[0]
    squared_norms = np.einsum("ij,ij->i", data, data)

    def squared_distances(centres):
        return _squared_distances(data, centres, squared_norms)

    # Greedy k-means++: each new centre is the best (lowest total squared distance) of a few
    # candidates drawn with probability proportional to the squared distance to the nearest centre.
    candidates_per_step = 2 + int(np.log(num_clusters))
    centres = np.empty((num_clusters, data.shape[1]))
    centres[0] = data[rng.integers(n)]
    closest = squared_distances(centres[:1])[:, 0]
    for index in range(1, num_clusters):
        total = closest.sum()
        if total > 0:
            candidates = rng.choice(n, size=candidates_per_step, p=closest / total)
            options = np.minimum(closest[:, None], squared_distances(data[candidates]))
            best = int(np.argmin(options.sum(axis=0)))
            centres[index], closest = data[candidates[best]], options[:, best]
        else:
            centres[index] = data[rng.integers(n)]

    assignment = None
    for _ in range(iterations):
        distances = squared_distances(centres)
        new_assignment = np.argmin(distances, axis=1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        counts = np.bincount(assignment, minlength=num_clusters)
        sums = np.zeros_like(centres)
        np.add.at(sums, assignment, data)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        empty = np.flatnonzero(~filled)
        if empty.size:
            error = distances[np.arange(n), assignment]
            farthest = np.argsort(-error, kind="stable")[:empty.size]
            centres[empty[:farthest.size]] = data[farthest]
    return centres.astype(np.float32)


def nearest_codes(residuals: tf.Tensor, codebook: tf.Tensor) -> tf.Tensor:
    """Index (int32) of the code nearest in squared L2 distance to each row; ties go to the lower index."""
    distances = (tf.reduce_sum(tf.square(residuals), axis=1, keepdims=True)
                 - 2.0 * tf.matmul(residuals, codebook, transpose_b=True)
                 + tf.reduce_sum(tf.square(codebook), axis=1)[None, :])
    return tf.argmin(distances, axis=1, output_type=tf.int32)


class QuantizerOutput(NamedTuple):
    quantized: tf.Tensor  # [B, D] sum of the picked codes, with a straight-through gradient to the input
    codes: tf.Tensor  # [B, L] int32
    residuals: tf.Tensor  # [B, L, D] the residual each level quantised (level 0: the input)
    level_losses: tf.Tensor  # [L] codebook + commitment_weight * commitment loss of each level
    quantization_loss: tf.Tensor  # scalar, the sum of level_losses


class ResidualQuantizer(tf.keras.layers.Layer):
    """`num_levels` codebooks of `codebook_size` codes; each level quantises the previous residual."""

    def __init__(self, num_levels: int, codebook_size: int, commitment_weight: float = 0.25,
                 reservoir_size: int = 1024, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if num_levels < 1 or codebook_size < 2:
            raise ValueError("need num_levels >= 1 and codebook_size >= 2")
        self.num_levels = int(num_levels)
        self.codebook_size = int(codebook_size)
        self.commitment_weight = float(commitment_weight)
        self.reservoir_size = int(max(reservoir_size, 1))
        self.seed = int(seed)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.codebooks = self.add_weight(
            name="codebooks", shape=[self.num_levels, self.codebook_size, dim], trainable=True,
            initializer=tf.keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(dim), seed=self.seed))
        # Training state, not part of the learned model: code counts since the last reset and the
        # latest residuals of every level (newest last; only the last `reservoir_filled` rows are real).
        self.usage = self.add_weight(name="usage", shape=[self.num_levels, self.codebook_size], dtype=tf.int64,
                                     initializer="zeros", trainable=False)
        self.reservoir = self.add_weight(name="reservoir", shape=[self.reservoir_size, self.num_levels, dim],
                                         initializer="zeros", trainable=False)
        self.reservoir_filled = self.add_weight(name="reservoir_filled", shape=[], dtype=tf.int64,
                                                initializer="zeros", trainable=False)
        super().build(input_shape)

    def call(self, inputs) -> QuantizerOutput:
        residual = inputs
        total = tf.zeros_like(inputs)
        codes, residuals, level_losses = [], [], []
        for level in range(self.num_levels):
            codebook = self.codebooks[level]
            index = nearest_codes(tf.stop_gradient(residual), codebook)
            code = tf.gather(codebook, index)
            codebook_loss = tf.reduce_mean(tf.reduce_sum(tf.square(tf.stop_gradient(residual) - code), axis=1))
            commitment_loss = tf.reduce_mean(tf.reduce_sum(tf.square(residual - tf.stop_gradient(code)), axis=1))
            level_losses.append(codebook_loss + self.commitment_weight * commitment_loss)
            codes.append(index)
            residuals.append(residual)
            total = total + tf.stop_gradient(code)
            residual = residual - tf.stop_gradient(code)
        quantized = inputs + tf.stop_gradient(total - inputs)
        level_losses = tf.stack(level_losses)
        return QuantizerOutput(quantized=quantized, codes=tf.stack(codes, axis=1),
                               residuals=tf.stack(residuals, axis=1), level_losses=level_losses,
                               quantization_loss=tf.reduce_sum(level_losses))

    def record(self, codes: tf.Tensor, residuals: tf.Tensor) -> None:
        """Counts the codes of a batch and appends its residuals [B, L, D] to the buffer (oldest rows drop out).

        One-hot sums and a concatenation rather than bincount and scatter, so the step stays
        deterministic under `tf.config.experimental.enable_op_determinism` on any device.
        """
        self.usage.assign_add(tf.reduce_sum(tf.one_hot(codes, self.codebook_size, dtype=tf.int64), axis=0))
        batch = tf.shape(residuals, out_type=tf.int64)[0]
        combined = tf.concat([self.reservoir, tf.cast(residuals, self.reservoir.dtype)], axis=0)
        self.reservoir.assign(combined[tf.shape(combined)[0] - self.reservoir_size:])
        self.reservoir_filled.assign(tf.minimum(self.reservoir_filled + batch, self.reservoir_size))

    def reset_usage(self) -> None:
        self.usage.assign(tf.zeros_like(self.usage))

    def usage_fractions(self) -> List[float]:
        """Fraction of each level's codes picked at least once since the last `reset_usage`."""
        return [float(value) for value in np.mean(self.usage.numpy() > 0, axis=1)]

    def reset_dead_codes(self, rng: np.random.Generator) -> List[int]:
        """Moves codes unused since the last `reset_usage` onto random buffered residuals of their level.

        Residuals are drawn one at a time with probability proportional to their squared distance
        to the nearest live (or already moved) code, so a code revives where it is needed most.

        Returns how many codes each level re-seeded (none while the buffer is empty).
        """
        filled = int(self.reservoir_filled.numpy())
        usage = self.usage.numpy()
        if filled == 0:
            return [0] * self.num_levels
        reservoir = self.reservoir.numpy()[self.reservoir_size - filled:].astype(np.float64)
        codebooks = self.codebooks.numpy()
        reseeded = []
        for level in range(self.num_levels):
            dead = np.flatnonzero(usage[level] == 0)
            alive = codebooks[level, usage[level] > 0].astype(np.float64)
            residuals = reservoir[:, level]
            # Squared distance of each buffered residual to its nearest live code: new codes are
            # drawn in proportion to it (as in k-means++), so they land where the quantiser errs most.
            error = (np.min(_squared_distances(residuals, alive), axis=1) if alive.size
                     else np.ones(filled))
            for code in dead:
                total = error.sum()
                row = rng.choice(filled, p=error / total) if total > 0 else rng.integers(filled)
                codebooks[level, code] = residuals[row]
                error = np.minimum(error, _squared_distances(residuals, residuals[row:row + 1])[:, 0])
            reseeded.append(int(dead.size))
        self.codebooks.assign(codebooks)
        return reseeded

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels, "codebook_size": self.codebook_size,
                "commitment_weight": self.commitment_weight, "reservoir_size": self.reservoir_size,
                "seed": self.seed}


class RQVAE(tf.keras.Model):
    """Encoder -> ResidualQuantizer -> decoder, trained by its own `train_step` under `fit`."""

    def __init__(self, input_dim: int, latent_dim: int = 32, hidden_dims: Sequence[int] = (256, 128),
                 num_levels: int = 3, codebook_size: int = 256, commitment_weight: float = 0.25,
                 reservoir_size: int = 1024, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.latent_dim = int(latent_dim)
        self.hidden_dims = [int(units) for units in hidden_dims]
        self.seed = int(seed)
        self.encoder = MLP(self.hidden_dims, self.latent_dim, seed=self.seed, name="encoder")
        self.quantizer = ResidualQuantizer(num_levels, codebook_size, commitment_weight, reservoir_size,
                                           seed=self.seed + 1000, name="quantizer")
        self.decoder = MLP(self.hidden_dims[::-1], self.input_dim, seed=self.seed + 2000, name="decoder")
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = tf.keras.metrics.Mean(name="reconstruction")
        self.quantization_tracker = tf.keras.metrics.Mean(name="quantization")
        self._inference = None

    @property
    def num_levels(self) -> int:
        return self.quantizer.num_levels

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.quantization_tracker]

    def build_all(self) -> "RQVAE":
        """Creates every variable (a forward pass on zeros), so weights can be assigned or restored."""
        self(tf.zeros([1, self.input_dim]))
        return self

    def call(self, inputs, training=False):
        return self.decoder(self.quantizer(self.encoder(inputs)).quantized)

    def compute_losses(self, inputs) -> Dict[str, tf.Tensor]:
        """The training objective on a batch and its parts (see the module docstring)."""
        quantizer_output = self.quantizer(self.encoder(inputs))
        reconstruction = self.decoder(quantizer_output.quantized)
        reconstruction_loss = tf.reduce_mean(tf.reduce_sum(tf.square(inputs - reconstruction), axis=1))
        return {"loss": reconstruction_loss + quantizer_output.quantization_loss,
                "reconstruction": reconstruction_loss, "quantization": quantizer_output.quantization_loss,
                "codes": quantizer_output.codes, "residuals": quantizer_output.residuals}

    def train_step(self, data):
        inputs = data[0] if isinstance(data, (tuple, list)) else data
        with tf.GradientTape() as tape:
            losses = self.compute_losses(inputs)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(losses["loss"], variables), variables))
        self.quantizer.record(losses["codes"], losses["residuals"])
        return self._track(losses)

    def test_step(self, data):
        inputs = data[0] if isinstance(data, (tuple, list)) else data
        return self._track(self.compute_losses(inputs))

    def _track(self, losses):
        self.loss_tracker.update_state(losses["loss"])
        self.reconstruction_tracker.update_state(losses["reconstruction"])
        self.quantization_tracker.update_state(losses["quantization"])
        return {metric.name: metric.result() for metric in self.metrics}

    def initialize_codebooks(self, inputs: np.ndarray, seed: int, iterations: int = 30) -> None:
        """k-means over the encoder's latents of `inputs` for level 0, then over each level's residuals."""
        self.build_all()
        residuals = self.encoder(tf.convert_to_tensor(inputs, tf.float32)).numpy()
        codebooks = []
        for level in range(self.num_levels):
            centres = kmeans(residuals, self.codebook_size, seed=seed + level, iterations=iterations)
            codebooks.append(centres)
            picked = nearest_codes(tf.constant(residuals), tf.constant(centres)).numpy()
            residuals = residuals - centres[picked]
        self.quantizer.codebooks.assign(np.stack(codebooks))

    def inference(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Codes [B, L], reconstruction [B, input_dim] and residuals [B, L+1, latent] (last: what is left)."""
        if self._inference is None:
            def infer(batch):
                latent = self.encoder(batch)
                output = self.quantizer(latent)
                return {"codes": output.codes, "reconstruction": self.decoder(output.quantized),
                        "residuals": tf.concat([output.residuals, (latent - output.quantized)[:, None]], axis=1)}

            self._inference = tf.function(
                infer, input_signature=[tf.TensorSpec([None, self.input_dim], tf.float32)])
        return self._inference(tf.convert_to_tensor(inputs, tf.float32))

    def get_config(self):
        return {"input_dim": self.input_dim, "latent_dim": self.latent_dim, "hidden_dims": self.hidden_dims,
                "num_levels": self.num_levels, "codebook_size": self.codebook_size,
                "commitment_weight": self.quantizer.commitment_weight,
                "reservoir_size": self.quantizer.reservoir_size, "seed": self.seed}


class CodebookMonitor(tf.keras.callbacks.Callback):
    """Per epoch: zero the code counts, then record usage and (optionally) re-seed dead codes.

    `history` gets one entry per epoch: the fraction of each level's codes used during it and how
    many were re-seeded. The last epoch is not followed by a reset, since nothing would train
    the moved codes afterwards.
    """

    def __init__(self, reset_dead_codes: bool, seed: int, epochs: Optional[int] = None):
        super().__init__()
        self.reset_dead_codes = reset_dead_codes
        self.rng = np.random.default_rng(seed)
        self.epochs = epochs
        self.history: List[Dict[str, List[float]]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.model.quantizer.reset_usage()

    def on_epoch_end(self, epoch, logs=None):
        quantizer = self.model.quantizer
        entry = {"usage": quantizer.usage_fractions(), "reseeded": [0] * quantizer.num_levels}
        last = self.epochs is not None and epoch + 1 >= self.epochs
        if self.reset_dead_codes and not last:
            entry["reseeded"] = quantizer.reset_dead_codes(self.rng)
        self.history.append(entry)
