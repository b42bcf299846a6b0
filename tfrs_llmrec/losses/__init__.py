"""Losses, one file each."""

from tfrs_llmrec.losses.sampled_softmax import sampled_softmax_loss

__all__ = ["sampled_softmax_loss"]
