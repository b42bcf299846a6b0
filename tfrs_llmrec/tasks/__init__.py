"""Tasks: a loss plus what it needs at training time (candidate sampling, corrections)."""

from tfrs_llmrec.tasks.sampled_retrieval import SampledRetrievalTask

__all__ = ["SampledRetrievalTask"]
