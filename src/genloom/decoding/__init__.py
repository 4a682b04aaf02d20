"""One decoding engine for every generator: logits processors, search functions, the streaming ``generate``."""

from genloom.decoding.generate import GenerationConfig, StepModel, StepOutput, beam_search, generate

__all__ = ["GenerationConfig", "StepModel", "StepOutput", "beam_search", "generate"]
