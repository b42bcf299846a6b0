"""Losses, one file each."""

from tfrs_llmrec.losses.bpr import bpr_loss, l2_regularization
from tfrs_llmrec.losses.cosine_alignment import cosine_alignment_loss, mean_cosine
from tfrs_llmrec.losses.info_nce import info_nce_loss
from tfrs_llmrec.losses.sampled_softmax import sampled_softmax_loss

__all__ = ["bpr_loss", "cosine_alignment_loss", "info_nce_loss", "l2_regularization", "mean_cosine",
           "sampled_softmax_loss"]

from tfrs_llmrec.losses.asymmetric_transfer import asymmetric_transfer_loss
from tfrs_llmrec.losses.orthogonality import orthogonality_loss

__all__ += ["asymmetric_transfer_loss", "orthogonality_loss"]

from tfrs_llmrec.losses.modality_alignment import cosine_distance, modality_alignment_loss

__all__ += ["cosine_distance", "modality_alignment_loss"]

from tfrs_llmrec.losses.routing_regularization import routing_regularization_loss

__all__ += ["routing_regularization_loss"]
