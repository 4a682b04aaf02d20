import gzip
import json

import pytest

from genloom.data.readers import read_corpus, read_jsonl, read_lines, read_parallel, read_tsv
from genloom.errors import UserError


def test_lines_from_txt_and_gz_are_the_same(tmp_path):
    (tmp_path / "a.txt").write_text("one two\n\n three \n", encoding="utf-8")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("one two\n\n three \n")
    assert read_lines(tmp_path / "a.txt") == read_lines(tmp_path / "a.txt.gz") == ["one two", "three"]


def test_missing_and_empty_files_are_named(tmp_path):
    with pytest.raises(UserError, match="data file not found: .*nope.txt"):
        read_lines(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(UserError, match="data file is empty: .*empty.txt"):
        read_lines(tmp_path / "empty.txt")


def test_undecodable_bytes_give_the_file_and_offset(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(UserError, match=r"bad.txt is not valid UTF-8: undecodable byte 0xff at byte offset 14"):
        read_lines(tmp_path / "bad.txt")


def test_truncated_gzip_is_a_clear_error(tmp_path):
    data = gzip.compress(("word " * 5000).encode())
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cannot read .*cut.txt.gz"):
        read_lines(tmp_path / "cut.txt.gz")


def test_jsonl_fields_in_order_and_errors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"src": "a b", "tgt": ["c", "d"]}) + "\n" + json.dumps({"src": "e", "tgt": "f"}) + "\n")
    assert read_jsonl(path, ["tgt", "src"]) == [["c d", "a b"], ["f", "e"]]
    with pytest.raises(UserError, match="line 1 has no field 'text'"):
        read_jsonl(path, ["text"])
    path.write_text('{"src": 1}\n')
    with pytest.raises(UserError, match="field 'src' must be text"):
        read_jsonl(path, ["src"])
    path.write_text('{"src": \n')
    with pytest.raises(UserError, match="line 1 is not valid JSON"):
        read_jsonl(path, ["src"])


def test_parallel_text_from_two_files_or_tsv(tmp_path):
    (tmp_path / "s.txt").write_text("ein Hund\nzwei Katzen\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("a dog\ntwo cats\n", encoding="utf-8")
    (tmp_path / "p.tsv").write_text("ein Hund\ta dog\nzwei Katzen\ttwo cats\n", encoding="utf-8")
    expected = [("ein Hund", "a dog"), ("zwei Katzen", "two cats")]
    assert read_parallel(tmp_path / "s.txt", tmp_path / "t.txt") == expected
    assert read_parallel(tmp_path / "p.tsv") == expected
    (tmp_path / "t.txt").write_text("a dog\n", encoding="utf-8")
    with pytest.raises(UserError, match="differ in length"):
        read_parallel(tmp_path / "s.txt", tmp_path / "t.txt")
    (tmp_path / "p.tsv").write_text("only one field\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 1 has 1 tab-separated fields; expected 2"):
        read_tsv(tmp_path / "p.tsv")


def test_read_corpus_formats(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "Hello There"}\n', encoding="utf-8")
    assert read_corpus(tmp_path / "c.jsonl", "jsonl", "text", lowercase=True) == ["hello there"]
    (tmp_path / "c.tsv").write_text("x\tsecond col\n", encoding="utf-8")
    assert read_corpus(tmp_path / "c.tsv", "tsv", "1") == ["second col"]


def test_documents_in_mixed_encodings_are_decoded_and_the_encoding_named():
    from genloom.data.readers import decode_document

    western = "The café’s “naïve” owner — Grüße aus München."
    assert decode_document(western.encode("utf-8")) == (western, "utf-8")
    assert decode_document(western.encode("cp1252")) == (western, "cp1252")  # not cp1250's "naďve"
    assert decode_document("\ufeff" .encode("utf-8") + b"bom") == ("bom", "utf-8-sig")
    assert decode_document(western.encode("utf-16")) == (western, "utf-16")
    russian = "Привет, как дела? Это проверка кодировки документа."
    assert decode_document(russian.encode("cp1251")) == (russian, "cp1251")
    for raw, reason in ((b"", "empty"), (b" \n\t", "empty"), (b"\x00\x01\x02text", "binary")):
        with pytest.raises(UserError, match=reason):
            decode_document(raw)
