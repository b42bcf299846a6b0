"""Full-ranking evaluation (overall, head/tail items, active/inactive users) and its reports."""

from tfrs_llmrec.evaluation.ctr import evaluate_ctr, predict_and_evaluate
from tfrs_llmrec.evaluation.evaluator import (RetrievalEvaluation, evaluate_retrieval, mean_by_popularity_bucket,
                                              popularity_buckets)
from tfrs_llmrec.evaluation.report import write_html_report, write_metrics_json

__all__ = ["RetrievalEvaluation", "evaluate_retrieval", "mean_by_popularity_bucket", "popularity_buckets",
           "write_html_report", "write_metrics_json"]
__all__ += ["evaluate_ctr", "predict_and_evaluate"]
