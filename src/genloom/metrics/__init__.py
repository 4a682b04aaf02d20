"""Evaluation metrics: perplexity, BLEU/chrF (sacrebleu), ROUGE (rouge-score), distinct-n, self-BLEU."""

from genloom.metrics.text import bleu, chrf, distinct_n, perplexity, rouge, self_bleu

__all__ = ["bleu", "chrf", "distinct_n", "perplexity", "rouge", "self_bleu"]
