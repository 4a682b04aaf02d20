"""The readers on the real staged corpora; skipped, with the reason, where ../shared/data is absent."""

import pytest

from genloom.data.readers import read_corpus, read_jsonl, read_parallel
from tests.conftest import SHARED_DATA

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"staged corpora not found at {SHARED_DATA}")


@needs_shared
def test_ptb_validation_split_has_its_documented_size():
    lines = read_corpus(SHARED_DATA / "ptb" / "ptb.valid.txt.gz")
    assert len(lines) == 3370
    assert sum(len(line.split()) + 1 for line in lines) == 73760  # words plus one <eos> per line


@needs_shared
def test_multi30k_validation_pairs_align():
    raw = SHARED_DATA / "multi30k" / "raw"
    pairs = read_parallel(raw / "val.de.gz", raw / "val.en.gz")
    assert len(pairs) == 1014 and all(s and t for s, t in pairs)


@needs_shared
def test_scitldr_fields_read_as_text():
    rows = read_jsonl(SHARED_DATA / "scitldr" / "dev.jsonl.gz", ["source", "title"])
    assert len(rows) == 619 and all(isinstance(s, str) and s for s, _ in rows)
