"""AKT-Rec's asymmetric head-to-tail transfer between members of the same cluster.

Row i of `head` and row i of `tail` are representations of a frequent (head) and a rare (tail)
member of the same cluster; the other rows of the batch are negatives. Two in-batch InfoNCE
terms over cosine similarities pull each pair together, each moving one side only:

    loss = lambda_head * InfoNCE(head, stop_gradient(tail)) + lambda_tail * InfoNCE(tail, stop_gradient(head))

The first term moves head representations toward their tail partners, the second moves tail
representations toward their head partners. Head representations are trained on many
interactions and tail ones are not, so the transfer should mostly flow from head to tail:
choose lambda_head < lambda_tail (the defaults are 0.1 and 1.0).
"""

from typing import Optional

import tensorflow as tf

from tfrs_llmrec.losses.info_nce import info_nce_loss
from tfrs_llmrec.losses.precision import full_precision


def asymmetric_transfer_loss(head: tf.Tensor, tail: tf.Tensor, lambda_head: float = 0.1, lambda_tail: float = 1.0,
                             temperature: float = 0.1, sample_weight: Optional[tf.Tensor] = None,
                             cluster_ids: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Scalar asymmetric InfoNCE transfer loss between paired head and tail representations.

    Args:
      head: [N, d] head-member representations.
      tail: [N, d] tail-member representations; row i is from the same cluster as head row i.
      lambda_head: weight of InfoNCE(head, stop_gradient(tail)), the only term that moves `head`.
      lambda_tail: weight of InfoNCE(tail, stop_gradient(head)), the only term that moves `tail`.
      temperature: cosine similarities are divided by it.
      sample_weight: [N] optional non-negative row weights or boolean mask. A row with weight 0
        (a cluster without a valid head/tail pair in the batch) is dropped entirely: it is neither
        a query nor a negative, so whatever it holds changes nothing. Each term is the weighted
        mean over the kept rows; no kept row gives 0.
      cluster_ids: [N] optional cluster index of each row; rows of the same cluster are not
        negatives of each other (they would be false negatives).
    """
    head = full_precision(head)
    tail = tf.cast(tail, head.dtype)
    if sample_weight is not None:
        weights = tf.cast(sample_weight, head.dtype)
        keep = weights > 0
        head, tail, sample_weight = (tf.boolean_mask(head, keep), tf.boolean_mask(tail, keep),
                                     tf.boolean_mask(weights, keep))
        if cluster_ids is not None:
            cluster_ids = tf.boolean_mask(cluster_ids, keep)
    head_update = info_nce_loss(head, tf.stop_gradient(tail), None, temperature=temperature, normalize=True,
                                sample_weight=sample_weight, positive_ids=cluster_ids)
    tail_update = info_nce_loss(tail, tf.stop_gradient(head), None, temperature=temperature, normalize=True,
                                sample_weight=sample_weight, positive_ids=cluster_ids)
    return lambda_head * head_update + lambda_tail * tail_update
