"""Corpus readers: line files (``.txt``, ``.txt.gz``), parallel text (two files or TSV) and JSONL.

Every reader fails with one sentence that names the file: missing, empty, not
UTF-8 (with the byte offset), or malformed (with the line number).
"""

from __future__ import annotations

import codecs
import gzip
import json
import unicodedata
import zlib
from collections import Counter
from pathlib import Path

import charset_normalizer

from genloom.errors import UserError


def read_text(path: str | Path) -> str:
    """The whole file as text; ``.gz`` files are decompressed (offsets then count decompressed bytes)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    if not path.is_file():
        raise UserError(f"data path is not a file: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"cannot read {path}: {error}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        where = "decompressed byte offset" if path.suffix == ".gz" else "byte offset"
        raise UserError(
            f"{path} is not valid UTF-8: undecodable byte 0x{raw[error.start]:02x} at {where} {error.start}."
        ) from None
    if not text.strip():
        raise UserError(f"data file is empty: {path}")
    return text.removeprefix("\ufeff")


BOMS = [(codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]


def decode_document(raw: bytes) -> tuple[str, str]:
    """A document's text and the encoding it was read with, for collections whose files come from anywhere.

    A byte-order mark decides first, then strict UTF-8. Otherwise charset-normalizer guesses; when its guess reads
    as Latin script, the file is read as Windows-1252 (the legacy code such files almost always have; the
    detector alone confuses it with Central European cp1250 on short texts); in another script, a Windows code page
    is preferred among the detector's readings. Raises ``UserError`` for an empty
    file, a binary one (a NUL byte without a UTF-16/32 mark) or bytes no encoding explains.
    """
    if not raw.strip():
        raise UserError("it is empty")
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError:
                raise UserError(f"it starts with a {encoding} byte-order mark but is not {encoding}") from None
    if b"\x00" in raw[:8192]:
        raise UserError("it is binary (it holds NUL bytes)")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    guesses = list(charset_normalizer.from_bytes(raw))
    if not guesses:
        raise UserError("no text encoding explains its bytes")
    script = _script(str(guesses[0]))
    if script == "LATIN":
        try:
            return raw.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:  # bytes 0x81, 0x8d, 0x8f, 0x90, 0x9d are undefined in Windows-1252
            pass
    # Among readings in the same script, a Windows code page is the likelier (cp1251 over mac_cyrillic).
    windows = [g for g in guesses if g.encoding.startswith("cp125") and _script(str(g)) == script]
    chosen = windows[0] if windows else guesses[0]
    return str(chosen), chosen.encoding


def _script(text: str) -> str:
    """The script most of a text's non-ASCII letters belong to (LATIN, CYRILLIC, GREEK, …), or LATIN if none."""
    names = Counter(unicodedata.name(c, "?").split()[0] for c in text if ord(c) > 127 and c.isalpha())
    return names.most_common(1)[0][0] if names else "LATIN"


def transform_text(text: str, lowercase: bool = False) -> str:
    """The text transformation a recipe asks for (``data.lowercase``), the one function that applies it: the
    readers call it on training and evaluation data, and ``api.LoadedModel`` on every prompt, source and text it
    is given, so a model reads text at inference exactly as it did in training."""
    return text.lower() if lowercase else text


def read_lines(path: str | Path, lowercase: bool = False) -> list[str]:
    """Non-empty lines of a ``.txt``/``.txt.gz`` file, stripped of surrounding whitespace."""
    lines = [line.strip() for line in read_text(path).splitlines()]
    lines = [transform_text(line, lowercase) for line in lines if line]
    if not lines:
        raise UserError(f"data file is empty: {path}")
    return lines


def read_jsonl(path: str | Path, fields: list[str]) -> list[list[str]]:
    """For each JSON object line, the string values of ``fields``, in that order."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {number} is not valid JSON: {error.msg}.") from None
        if not isinstance(record, dict):
            raise UserError(f"{path} line {number} must be a JSON object, got {type(record).__name__}.")
        row = []
        for name in fields:
            if name not in record:
                raise UserError(f"{path} line {number} has no field '{name}' (it has: {', '.join(record)}).")
            value = record[name]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = " ".join(value)
            if not isinstance(value, str):
                raise UserError(f"{path} line {number}: field '{name}' must be text, got {type(value).__name__}.")
            row.append(value)
        rows.append(row)
    return rows


def read_tsv(path: str | Path, columns: int = 2) -> list[list[str]]:
    """Rows of a tab-separated file, each with exactly ``columns`` fields."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != columns:
            raise UserError(f"{path} line {number} has {len(parts)} tab-separated fields; expected {columns}.")
        rows.append([p.strip() for p in parts])
    return rows


def read_parallel(source: str | Path, target: str | Path | None = None) -> list[tuple[str, str]]:
    """Source–target pairs from two line-aligned files, or from one TSV file when ``target`` is None."""
    if target is None:
        return [(s, t) for s, t in read_tsv(source, columns=2)]
    src = read_text(source).splitlines()
    tgt = read_text(target).splitlines()
    if len(src) != len(tgt):
        raise UserError(f"parallel files differ in length: {source} has {len(src)} lines, {target} has {len(tgt)}.")
    return [(s.strip(), t.strip()) for s, t in zip(src, tgt) if s.strip() and t.strip()]


def read_corpus(path: str | Path, format: str = "lines", field: str | None = None, lowercase: bool = False) -> list[str]:
    """Texts for a language model from any single-text format of ``DataConfig``."""
    if format == "lines":
        return read_lines(path, lowercase)
    if format == "text":  # the whole file as one text, newlines kept (character-level streams)
        text = read_text(path)
        return [transform_text(text, lowercase)]
    if format == "jsonl":
        texts = [row[0] for row in read_jsonl(path, [field or "text"])]
    elif format == "tsv":
        column = int(field or 0)
        with_columns = [line.split("\t") for line in read_text(path).splitlines() if line.strip()]
        if any(len(parts) <= column for parts in with_columns):
            raise UserError(f"{path} has a line with fewer than {column + 1} tab-separated fields.")
        texts = [parts[column] for parts in with_columns]
    else:
        raise UserError(f"unknown data format '{format}'; expected lines, text, jsonl or tsv.")
    texts = [transform_text(t.strip(), lowercase) for t in texts if t.strip()]
    if not texts:
        raise UserError(f"data file is empty: {path}")
    return texts
