"""The early-stopping monitor's users: every validation user by default, or a fixed sample."""

import numpy as np

from tfrs_llmrec.config import ExperimentConfig, from_dict
from tfrs_llmrec.workflow.stages import sampled_rows


def test_every_user_unless_a_smaller_sample_is_asked_for():
    assert from_dict(ExperimentConfig, {"name": "x"}).train.monitor_max_users is None  # the default: all users
    assert sampled_rows(50_000, None, seed=1) is None
    assert sampled_rows(100, 100, seed=1) is None
    rows = sampled_rows(100, 30, seed=1)
    assert len(rows) == 30 and len(np.unique(rows)) == 30 and np.all(np.diff(rows) > 0) and rows.max() < 100
    np.testing.assert_array_equal(rows, sampled_rows(100, 30, seed=1))  # the same users every epoch
    assert not np.array_equal(rows, sampled_rows(100, 30, seed=2))
