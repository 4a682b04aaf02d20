"""genloom reuse: the CLI on a small folder (mixed encodings, empty and binary files, an identical copy), the
verdict model, the candidate index against all pairs, and the side-by-side report in headless Chromium."""

import json
import random

import numpy as np
import pytest

from genloom.apps.reuse import (FEATURES, LEXICAL, Document, SourceIndex, VerdictModel, default_verdict, detect,
                                fit_verdict, order_classes, read_collection)
from genloom.apps.reuse_report import write_report
from genloom.errors import UserError

TURING = ("Alan Turing was an English mathematician, computer scientist and logician. He was highly influential in "
          "the development of theoretical computer science, providing a formalisation of the concepts of algorithm "
          "and computation with the Turing machine, which can be considered a model of a general-purpose computer. "
          "Turing is widely considered to be the father of theoretical computer science.")
DANUBE = ("The Danube is the second-longest river in Europe. It flows through much of Central and Southeastern "
          "Europe, from the Black Forest into the Black Sea. Its drainage basin includes parts of ten more countries.")
BREAD = ("Sourdough bread is made by the fermentation of dough using wild lactobacillaceae and yeast. Lactic acid "
         "from fermentation imparts a sour taste and improves keeping qualities.")
ESSAY = ("In my essay I discuss computing. Alan Turing was an English mathematician, computer scientist and logician. "
         "He was highly influential in the development of theoretical computer science, providing a formalisation "
         "of the concepts of algorithm and computation with the Turing machine. That is all I have to say.")


@pytest.fixture
def folders(tmp_path):
    sources, suspects = tmp_path / "sources", tmp_path / "suspects"
    (sources / "science").mkdir(parents=True)
    suspects.mkdir()
    (sources / "science" / "turing.txt").write_text(TURING)
    (sources / "danube.txt").write_text(DANUBE)
    (sources / "bread.txt").write_bytes(BREAD.encode("utf-16"))
    (sources / ".hidden.txt").write_text(TURING)
    (suspects / "essay.txt").write_text(ESSAY)
    (suspects / "windows.txt").write_bytes(("Grüße: “" + DANUBE + "” — café notes.").encode("cp1252"))
    (suspects / "copy.txt").write_text(BREAD)
    (suspects / "own.txt").write_text("My cat likes to sleep in the sun on warm afternoons and chase birds.")
    (suspects / "empty.txt").write_text("")
    (suspects / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    return sources, suspects


def test_the_cli_on_a_folder_names_reused_sources_and_skips_what_is_not_text(cli, folders, tmp_path):
    sources, suspects = folders
    result = cli("reuse", "--sources", sources, "--suspects", suspects, "--encoder", "none", "--json")
    assert result.returncode == 0, result.stderr
    notes = result.stderr.splitlines()
    assert f"note: skipped {suspects / 'empty.txt'}: it is empty." in notes
    assert f"note: skipped {suspects / 'image.png'}: it is binary (it holds NUL bytes)." in notes
    assert f"note: read {suspects / 'windows.txt'} as cp1252." in notes
    assert f"note: read {sources / 'bread.txt'} as utf-16." in notes
    found = {r["suspect"]: r["matches"] for r in json.loads(result.stdout)["results"]}
    assert set(found) == {"copy.txt", "essay.txt", "own.txt", "windows.txt"}
    assert [(m["source"], m["verdict"]) for m in found["copy.txt"]] == [("bread.txt", "near_copy")]
    assert found["copy.txt"][0]["features"]["containment_5"] == 1.0
    assert [m["source"] for m in found["essay.txt"]] == ["science/turing.txt"]
    passage = found["essay.txt"][0]["passages"][0]
    assert ESSAY[slice(*passage["suspect"])].startswith("Alan Turing was an English mathematician")
    assert TURING[slice(*passage["source"])].endswith("with the Turing machine")
    assert found["own.txt"] == []
    assert [m["source"] for m in found["windows.txt"]] == ["danube.txt"]


def test_the_cli_with_the_minilm_encoder_writes_a_report(cli, folders, tmp_path):
    sources, suspects = folders
    result = cli("reuse", "--sources", sources, "--suspects", suspects / "essay.txt", "--out", tmp_path / "r.html")
    assert result.returncode == 0, result.stderr
    assert "essay.txt: 1 source(s) reused" in result.stdout and "semantic" in result.stdout
    assert (tmp_path / "r.html").read_text().count('class="pair"') == 1


@pytest.mark.parametrize("args, message", [
    (["--sources", "missing-folder", "--suspects", "."], "--sources missing-folder does not exist."),
    (["--sources", "SRC", "--suspects", "SRC", "--top", "0"], "--top must be at least 1"),
    (["--sources", "SRC", "--suspects", "SRC", "--encoder", "none", "--verdict-model", "SRC/danube.txt"],
     "is truncated or corrupt (not valid JSON"),
    (["--sources", "SRC", "--suspects", "SRC", "--encoder", "none", "--verdict-model", "OTHER"],
     "is not a verdict model written by genloom reuse-train."),
    (["--sources", "EMPTY", "--suspects", "SRC"], "holds no readable text document"),
])
def test_bad_arguments_get_one_line_and_exit_2(cli, folders, tmp_path, args, message):
    sources, _ = folders
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "blank.txt").write_text("\n")
    (tmp_path / "other.json").write_text('{"classes": ["none"]}')
    args = [a.replace("SRC", str(sources)).replace("EMPTY", str(tmp_path / "nothing"))
            .replace("OTHER", str(tmp_path / "other.json")) for a in args]
    result = cli("reuse", *args, "--encoder", "none") if "--encoder" not in args else cli("reuse", *args)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_long_document_identical_to_a_source_is_a_near_copy():
    rng = random.Random(0)
    text = " ".join(f"word{rng.randrange(20000)}" + ("." if i % 15 == 14 else "") for i in range(8000))
    results = detect([Document("suspect", text)], [Document("source", text), Document("other", DANUBE)])
    match, = results[0].matches
    assert (match.source.name, match.verdict) == ("source", "near_copy")
    assert match.features["lcs"] == 1.0 and match.features["coverage"] == 1.0
    assert match.passages == [((0, len(text)), (0, len(text)), 8000)]


def test_the_index_finds_the_pairs_that_all_pairs_find():
    rng = random.Random(3)
    sources = [Document(f"s{i}", " ".join(f"w{rng.randrange(50000)}" for _ in range(200))) for i in range(120)]
    suspects = []
    for i in range(20):
        planted = sources[rng.randrange(120)].text.split()
        start = rng.randrange(100)
        own = [f"x{rng.randrange(50000)}" for _ in range(60)]
        suspects.append(Document(f"q{i}", " ".join(own[:30] + planted[start:start + 40] + own[30:])))
    for i in range(5):
        suspects.append(Document(f"own{i}", " ".join(f"x{rng.randrange(50000)}" for _ in range(100))))
    indexed = detect(suspects, sources, encoder=None)
    everything = detect(suspects, sources, encoder=None, exhaustive=True)
    assert [[m.source.name for m in r.matches] for r in indexed] == [[m.source.name for m in r.matches]
                                                                     for r in everything]
    assert sum(bool(r.matches) for r in indexed) == 20
    assert max(r.candidates for r in indexed) < 10 and everything[0].candidates == 120
    assert SourceIndex(sources).candidates(sources[5])[0] == 5


def test_the_verdict_model_fits_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    labels = ["near_copy", "none", "light_revision", "heavy_revision"] * 25
    level = {"none": 0.0, "heavy_revision": 0.3, "light_revision": 0.6, "near_copy": 0.95}
    values = [{f: float(np.clip(level[y] + rng.normal(0, 0.03), 0, 1)) for f in LEXICAL} for y in labels]
    model = fit_verdict(values, labels, LEXICAL, {"trained_on": "test"})
    assert model.classes == ["none", "heavy_revision", "light_revision", "near_copy"] == order_classes(labels)
    assert model.about["cv_accuracy"] == 1.0 and model.about["class_counts"]["none"] == 25
    model.save(tmp_path / "verdict.json")
    again = VerdictModel.load(tmp_path / "verdict.json")
    rows = again.rows(values)
    assert np.allclose(again.probabilities(rows), model.probabilities(rows))
    assert [again.classes[i] for i in again.probabilities(rows).argmax(1)] == labels
    with pytest.raises(UserError, match="needs semantic"):
        default_verdict("minilm").rows(values)
    with pytest.raises(UserError, match="at least two"):
        fit_verdict(values[:5], ["none"] * 5, LEXICAL)
    assert order_classes(["1", "0"]) == ["0", "1"]
    assert set(default_verdict("none").features) == set(LEXICAL) and default_verdict("minilm").features == list(
        FEATURES)


def test_the_shipped_verdict_models_state_their_training_data_and_accuracy():
    for encoder in ("minilm", "none"):
        about = default_verdict(encoder).about
        assert about["encoder"] == encoder and about["pairs"] >= 400 and 0.5 < about["cv_accuracy"] <= 1.0
        assert "reuse_pairs" in about["trained_on"]


def test_the_report_highlights_matching_passages_in_headless_chromium(folders, tmp_path, browser):
    sources, _ = read_collection(folders[0], "--sources")
    long_essay = ESSAY + " " + " ".join(f"filler{i}." for i in range(3000)) + " " + DANUBE
    results = detect([Document("essay.txt", long_essay)], sources, encoder=None)
    path = write_report(results, tmp_path / "report.html")
    page_text = path.read_text()
    assert "<script src" not in page_text and "<link" not in page_text and "@import" not in page_text
    page = browser.new_page()
    page.goto(path.as_uri())
    assert page.locator("section.pair").count() == 2  # turing.txt and danube.txt
    for pair in range(2):
        suspect = page.locator(f'.text.suspect[data-pair="{pair}"] mark.passage')
        source = page.locator(f'.text.source[data-pair="{pair}"] mark.passage')
        assert suspect.count() == source.count() >= 1
        for n in range(suspect.count()):
            a, b = suspect.nth(n), source.nth(n)
            assert a.get_attribute("data-passage") == b.get_attribute("data-passage")
            assert a.evaluate("m => getComputedStyle(m).backgroundColor") == b.evaluate(
                "m => getComputedStyle(m).backgroundColor")
    turing = page.locator('section[data-source="science/turing.txt"] .text.suspect mark.passage').first
    assert turing.inner_text().startswith("Alan Turing was an English mathematician")
    section = 'section[data-source="danube.txt"]'
    danube = page.locator(f"{section} .text.suspect mark.passage").first
    assert danube.inner_text() == DANUBE.removesuffix(".")
    pane = page.locator(f"{section} .text.suspect")
    assert pane.evaluate("p => p.scrollHeight > p.clientHeight")  # the long essay scrolls in its pane
    page.locator(f"{section} .text.source mark.passage").first.click()
    page.wait_for_function(f"() => document.querySelector('{section} .text.suspect').scrollTop > 0")
    assert danube.evaluate("m => m.classList.contains('flash')")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert (tmp_path / "report.png").stat().st_size > 5000


def test_the_report_keeps_each_documents_own_text():
    """The marks' ids are built per side, not by rewriting the page, so a document saying INSIDE stays whole."""
    from genloom.apps.reuse_report import report_html

    text = "INSIDE the SIDE door " + BREAD
    page = report_html(detect([Document("copy.txt", text)], [Document("bread.txt", BREAD)], encoder=None))
    assert "INSIDE the SIDE door" in page and 'id="p0-0-suspect"' in page and 'id="p0-0-source"' in page
