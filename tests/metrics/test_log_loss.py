import numpy as np
import pytest
from sklearn.metrics import log_loss as sklearn_log_loss

from tfrs_llmrec.metrics.log_loss import log_loss


def _stable_bce(labels, logits):
    """-[y log sigmoid(z) + (1 - y) log sigmoid(-z)], with log sigmoid(z) = -logaddexp(0, -z)."""
    return float(np.mean(labels * np.logaddexp(0.0, -logits) + (1.0 - labels) * np.logaddexp(0.0, logits)))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [1, 2, 10, 1000])
def test_matches_sklearn_on_probabilities(seed, size):
    rng = np.random.default_rng(seed)
    labels = (rng.random(size) < 0.3).astype(np.int64)
    probabilities = rng.uniform(0.001, 0.999, size=size)
    expected = sklearn_log_loss(labels, probabilities, labels=[0, 1])
    assert log_loss(labels, probabilities) == pytest.approx(expected, rel=1e-12)


def test_probabilities_are_clipped_to_eps():
    # p = 0 for a positive costs -log(eps), not infinity; p = 1 for a positive costs -log(1 - eps).
    assert log_loss([1], [0.0]) == pytest.approx(-np.log(1e-7))
    assert log_loss([1, 0], [0.0, 1.0], eps=1e-3) == pytest.approx(-np.log(1e-3))
    assert log_loss([1], [1.0]) == pytest.approx(-np.log1p(-1e-7))
    # Same clipping as sklearn's, which clips at the dtype's eps (about 2.2e-16 for float64).
    eps = np.finfo(np.float64).eps
    assert log_loss([1, 0, 1], [0.0, 0.2, 1.0], eps=eps) == pytest.approx(
        sklearn_log_loss([1, 0, 1], [0.0, 0.2, 1.0]), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_from_logits_equals_probabilities_of_moderate_logits(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(500) < 0.4).astype(np.float32)
    logits = rng.normal(scale=3.0, size=500)
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    assert log_loss(labels, logits, from_logits=True) == pytest.approx(
        sklearn_log_loss(labels, probabilities), rel=1e-9)


def test_from_logits_stays_finite_and_exact_for_extreme_logits():
    labels = np.array([1, 0, 1, 0, 1, 0])
    logits = np.array([100.0, -100.0, -100.0, 100.0, 0.0, 40.0])
    value = log_loss(labels, logits, from_logits=True)
    assert np.isfinite(value)
    # Confident hits cost ~exp(-100), confident misses cost ~100; no clipping with logits.
    assert value == pytest.approx(_stable_bce(labels, logits), rel=1e-12)
    assert value == pytest.approx((100 + 100 + np.log(2) + 40) / 6, rel=1e-12)
    assert log_loss([1, 0], [100.0, -100.0], from_logits=True) == pytest.approx(np.exp(-100), rel=1e-6)


def test_soft_labels():
    # y = 0.5 at p = 0.5 costs log 2.
    assert log_loss([0.5], [0.5]) == pytest.approx(np.log(2))
    assert log_loss([0.5], [0.0], from_logits=True) == pytest.approx(np.log(2))


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="entries"):
        log_loss([1, 0], [0.5])
    with pytest.raises(ValueError, match="at least one"):
        log_loss([], [])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        log_loss([2, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match="from_logits"):
        log_loss([1, 0], [1.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        log_loss([1], [np.inf], from_logits=True)
    with pytest.raises(ValueError, match="eps"):
        log_loss([1], [0.5], eps=0.0)
