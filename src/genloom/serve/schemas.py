"""The request bodies the server accepts. Every field is declared; any other field is refused by name (an
OpenAI field genloom does not implement, such as ``logprobs`` or ``presence_penalty``, included)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# torch.Generator.manual_seed takes 64-bit seeds.
SEED_LIMIT = 2**63 - 1


class Decoding(BaseModel):
    """The decoding options every generating endpoint shares: OpenAI's, then genloom's."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The name of a served model (GET /v1/models).")
    max_tokens: int = Field(16, ge=1, description="The most new tokens per output.")
    temperature: float | None = Field(None, ge=0, le=100, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep the smallest set with this mass.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end an output (not included).")
    seed: int | None = Field(None, ge=0, le=SEED_LIMIT, description="Seed of this request's own sampler.")
    stream: bool = Field(False, description="Stream server-sent events as tokens are chosen.")
    method: Literal["greedy", "sample", "beam"] | None = Field(
        None, description="Default: sample (greedy at temperature 0) for completions, greedy for translate/summarize.")
    top_k: int = Field(0, ge=0, le=100_000, description="Keep the k best tokens when sampling (0: all).")
    num_beams: int = Field(4, ge=1, le=16, description="Beams for beam search.")
    length_penalty: float = Field(1.0, ge=-10, le=10, description="Beam scores are divided by length ** this.")
    repetition_penalty: float = Field(1.0, gt=0, le=100, description="CTRL's penalty on tokens already present.")
    no_repeat_ngram_size: int = Field(0, ge=0, le=100, description="Never repeat an n-gram of this size.")
    min_tokens: int = Field(0, ge=0, description="No end before this many new tokens.")
    no_unk: bool = Field(True, description="Never generate the unknown-word token.")
    ban_words: list[str] = Field(default_factory=list, max_length=1000, description="Words never generated.")
    bias: dict[str, float] = Field(default_factory=dict, description="Phrase → a score added to its last token.")
    redact: Literal["placeholder", "mask"] | None = Field(None, description="Replace personal data in and out.")
    safety: Literal["flag", "mask", "block"] | None = Field(None, description="Screen outputs for offensive words.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop strings, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("a stop string must not be empty")
        return stops


class CompletionRequest(Decoding):
    """``POST /v1/completions``: OpenAI's legacy completions."""

    prompt: str | list[str] = Field(description="The text to continue, or a list of texts.")
    n: int = Field(1, ge=1, le=16, description="Outputs per prompt.")


class TransduceRequest(Decoding):
    """``POST /v1/translate`` and ``/v1/summarize``: a seq2seq model's outputs for sources."""

    input: str | list[str] = Field(description="The source text, or a list of them.")
    max_tokens: int = Field(100, ge=1, description="The most new tokens per output.")
    attention: bool = Field(False, description="Also return each output token's attention over the source.")


class FillMaskRequest(BaseModel):
    """``POST /v1/fill-mask``: a masked LM's likeliest fillers for each [MASK]."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: str = Field(description="Text with one or more [MASK].")
    top_k: int = Field(5, ge=1, le=1000)


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: OpenAI's embeddings, from an encoder (a BERT)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | list[str] = Field(description="A text or a list of texts.")
    encoding_format: Literal["float"] = "float"
