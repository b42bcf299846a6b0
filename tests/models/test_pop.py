import numpy as np

from tfrs_llmrec.models import PopularityModel


def test_scores_rank_by_count_then_index():
    model = PopularityModel([3, 5, 5, 0])
    scores = (model.query_embeddings(np.array([7, 8])) @ model.item_embeddings().T)
    # Order: item 1 (5), item 2 (5, higher index), item 0 (3), item 3 (0).
    assert list(np.argsort(-scores[0], kind="stable")) == [1, 2, 0, 3]
    np.testing.assert_array_equal(scores[0], scores[1])
    assert len(set(scores[0])) == 4  # no ties left
