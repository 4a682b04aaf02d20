"""Evaluation metrics: perplexity, BLEU/chrF (sacrebleu), ROUGE (rouge-score), distinct-n, Texygen BLEU and self-BLEU."""

from genloom.metrics.text import (bleu, chrf, distinct_n, perplexity, reference_bleu, rouge, rouge_signature,
                                  self_bleu)

__all__ = ["bleu", "chrf", "distinct_n", "perplexity", "reference_bleu", "rouge", "rouge_signature", "self_bleu"]
