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


ROUGE_HYPS = ["the cats were sitting on the mat today",
              "we propose a new model for translation",
              "nothing in common"]
ROUGE_REFS = [["a cat sat on the mat"],
              ["a novel model for machine translation is proposed",
               "we propose a new model", "translation translation model model"],
              ["zzz"]]


def _direct(hyps, refs, stem=True):
    """rouge_score called directly, with the SciTLDR rule written out longhand."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stem)
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, rs in zip(hyps, refs, strict=True):
        per_ref = [scorer.score(r, hyp) for r in rs]
        best = 0
        for i, s in enumerate(per_ref):
            if s["rouge1"].fmeasure > per_ref[best]["rouge1"].fmeasure:
                best = i
        for key in sums:
            sums[key] += per_ref[best][key].fmeasure
    return {key: 100 * v / len(hyps) for key, v in sums.items()}


@pytest.mark.parametrize("stem", [True, False])
def test_rouge_equals_rouge_score_called_directly(stem):
    single = [[rs[0]] for rs in ROUGE_REFS]
    for refs in (single, ROUGE_REFS):
        s = score("rouge", ROUGE_HYPS, refs, stem=stem)
        expected = _direct(ROUGE_HYPS, refs, stem)
        assert s.parts == pytest.approx(expected)
        assert s.value == pytest.approx(expected["rougeL"])
        for key in ("rouge1", "rouge2", "rougeL"):
            assert score(key, ROUGE_HYPS, refs, stem=stem).value == pytest.approx(expected[key])
        assert f"stem:{'yes' if stem else 'no'}" in s.signature
    # stemming matters here: "cats"/"cat", "sitting"/"sat" differ only when not stemmed
    assert score("rouge1", ROUGE_HYPS[:1], [ROUGE_REFS[0]]).value > \
        score("rouge1", ROUGE_HYPS[:1], [ROUGE_REFS[0]], stem=False).value


def test_rouge_several_references_takes_the_best_rouge1_reference_for_all_three():
    # Reference A shares more unigrams (best ROUGE-1) but no bigram in order; B has a lower
    # ROUGE-1 and a higher ROUGE-2. The rule reports A's ROUGE-2, not the maximum.
    hyp = ["alpha beta gamma delta"]
    a, b = "delta gamma beta alpha", "alpha beta x y z w"
    s = score("rouge", hyp, [[b, a]], stem=False)
    only_a = score("rouge", hyp, [[a]], stem=False)
    only_b = score("rouge", hyp, [[b]], stem=False)
    assert only_a.parts["rouge1"] > only_b.parts["rouge1"]
    assert only_b.parts["rouge2"] > only_a.parts["rouge2"]
    assert s.parts == pytest.approx(only_a.parts)
    assert "highest ROUGE-1" in str(s) and "refs:best-rouge1" in s.signature
    printed = str(s)
    assert printed.startswith("ROUGE-1 = ") and "ROUGE-2 = " in printed and "ROUGE-L = " in printed


def test_is_better_and_printed_names():
    from rnnseq.metrics import is_better, metric_name

    assert is_better("bleu", 30, 29) and not is_better("ser", 30, 29)
    assert is_better("rouge", 1, 0) and is_better("loss", 1.0, None)
    assert not is_better("rougeL", 5, 5)
    assert metric_name("ROUGE-L") == "rougeL" and metric_name("SER") == "ser"
    with pytest.raises(ValueError, match="unknown metric"):
        is_better("bleu2", 1, 0)


def test_evaluate_rouge_on_files(tmp_path, capsys):
    from rnnseq.cli import main

    (tmp_path / "hyp").write_text("\n".join(ROUGE_HYPS) + "\n", encoding="utf-8")
    (tmp_path / "ref").write_text("\n".join("\t".join(rs) for rs in ROUGE_REFS) + "\n",
                                  encoding="utf-8")
    args = ["evaluate", "--hyp", str(tmp_path / "hyp"), "--ref", str(tmp_path / "ref"),
            "--metric", "rouge"]
    assert main(args) == 0
    out = capsys.readouterr().out
    expected = _direct(ROUGE_HYPS, ROUGE_REFS)
    assert f"ROUGE-1 = {expected['rouge1']:.2f}" in out
    assert f"ROUGE-L = {expected['rougeL']:.2f}" in out and "stem:yes" in out
    assert main([*args, "--no-stem"]) == 0
    assert "stem:no" in capsys.readouterr().out
