"""Auditing a training shard set for poisoned (backdoor) samples from a trained model's embeddings: each sample's
media and caption embedded (`embedding`), k nearest neighbours found in bounded memory (`neighbours`), per-sample
suspicion scores (`scores`), their power to find known poisoned samples (`metrics`), Parquet and a Markdown report
(`report`). `mmcl audit` (pipelines/audit.py) runs them in order."""

from mmcl.audit.metrics import auroc, detection_metrics, precision_recall_at, ranks
from mmcl.audit.neighbours import Neighbours, nearest, reference_sample
from mmcl.audit.scores import dao_score, knn_score, lid_mle, suspicion_scores

__all__ = ["Neighbours", "auroc", "dao_score", "detection_metrics", "knn_score", "lid_mle", "nearest",
           "precision_recall_at", "ranks", "reference_sample", "suspicion_scores"]
