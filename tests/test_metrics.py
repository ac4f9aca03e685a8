import pytest

from rnnseq.metrics import edit_distance, score


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a"], ["a"]) == 0


def test_ser_counts_outputs_matching_no_reference():
    hyps = ["K AE1 T", "D AO1 G", "F IH1 SH", ""]
    refs = [["K AE1 T"], ["D AA1 G", "D AO1 G"], ["F IY1 SH"], ["AH0"]]
    s = score("ser", hyps, refs)
    assert s.value == pytest.approx(50.0)
    assert s.detail == "2/4 wrong"


def test_wer_uses_closest_reference_and_reference_length():
    hyps = ["a b c", "x y"]
    refs = [["a b d", "a b c"], ["x z z"]]
    s = score("wer", hyps, refs)
    # 0 edits of 3 for the first (closest reference), 2 of 3 for the second
    assert s.value == pytest.approx(100 * 2 / 6)


def test_cer():
    assert score("cer", ["abcd"], [["abce"]]).value == pytest.approx(25.0)


def test_bleu_and_chrf_come_with_signatures():
    hyps = ["the cat sat on the mat", "a dog runs"]
    refs = [["the cat sat on the mat"], ["a dog runs fast"]]
    bleu = score("bleu", hyps, refs)
    assert 0 < bleu.value < 100
    assert "nrefs:1" in bleu.signature and "tok:13a" in bleu.signature
    assert "BLEU" in str(bleu)
    chrf = score("chrf", hyps, refs)
    assert "chrF" in chrf.signature or "nc:" in chrf.signature
    assert score("bleu", hyps, [[r[0], r[0]] for r in refs]).signature.count("nrefs:2") == 1


def test_mismatched_lengths_and_unknown_metric():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        score("wer", ["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="unknown metric"):
        score("rouge9", ["a"], [["a"]])
