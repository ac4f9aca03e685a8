"""Prefix-constrained decoding and scoring given targets."""

import pytest
import torch

from rnnseq.cli import main
from rnnseq.data.vocab import BOS_ID, EOS_ID
from rnnseq.errors import UsageError
from rnnseq.inference.translator import Translator
from rnnseq.modeldir import save_model_dir

from .test_ensemble import MEMBERS, SENTENCES, bundle

PREFIXES = ["Zwei Hunde", "", "Die", "Ein Mann mit"]


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("beam", [1, 3])
def test_outputs_start_with_their_prefix(member, beam):
    translator = Translator(bundle(**member))
    free = translator.translate_nbest(SENTENCES, beam_size=beam, n_best=beam)
    forced = translator.translate_nbest(SENTENCES, beam_size=beam, n_best=beam,
                                        prefixes=PREFIXES)
    for prefix, hyps, unforced in zip(PREFIXES, forced, free, strict=True):
        for h in hyps:
            assert h.tokens[:len(prefix.split())] == prefix.split()
            assert h.text.startswith(prefix)
        if not prefix:  # an empty prefix constrains nothing
            assert [h.tokens for h in hyps] == [h.tokens for h in unforced]


def test_a_prefix_may_copy_a_source_word_outside_the_vocabulary():
    translator = Translator(bundle(data={"src_tokenizer": "word"}, **MEMBERS[3]))  # copy
    [[hyp]] = translator.translate_nbest(["Ein Zebra."], beam_size=1,
                                         prefixes=["Zebra."])
    assert hyp.tokens[0] == "Zebra."  # not <unk>: the source holds it


def step_sum(translator: Translator, source: str, target: str) -> float:
    """The sum of the decoder's step log-probabilities along ``target`` and ``</s>``."""
    inputs = translator._inputs([source])
    ids = translator._target_ids(target, inputs.oov[0])
    [batch] = translator.backend._collate(inputs.tokens, inputs.src_map)
    model = translator.backend.model
    state = model.init_state(model.encode(batch.src, batch.src_lengths), batch.src_map)
    prev, total = BOS_ID, 0.0
    for tok in [*ids, EOS_ID]:
        lp, state, _ = model.decoder.step(torch.tensor([prev]), state)
        total += lp[0, tok].item()
        prev = tok
    return total


@pytest.mark.parametrize("member", MEMBERS)
def test_score_only_is_the_sum_of_step_log_probabilities(member):
    translator = Translator(bundle(**member))
    targets = ["Zwei Hunde spielen.", "", "Die Sonne scheint. Ein Zebra.", "Ein Mann"]
    sources = [*SENTENCES[:3], "Ein Zebra."]
    scores = translator.score(sources, targets)
    for source, target, score in zip(sources, targets, scores, strict=True):
        assert score == pytest.approx(step_sum(translator, source, target), abs=1e-4)
    # and a greedy output that ended scores its own log-probability
    for source, [hyp] in zip(sources, translator.translate_nbest(sources, beam_size=1),
                             strict=True):
        assert translator.score([source], [hyp.text])[0] == pytest.approx(
            step_sum(translator, source, hyp.text), abs=1e-4)


def test_an_ensemble_scores_with_its_mixture():
    b = bundle(**MEMBERS[0])
    alone = Translator(b).score(SENTENCES, ["Ein Mann."] * 4)
    for mixture in ("probability", "log-linear"):
        twice = Translator([b, b], mixture=mixture).score(SENTENCES, ["Ein Mann."] * 4)
        assert twice == pytest.approx(alone, abs=1e-4)


def test_cli_prefix_and_score_only(tmp_path, capsys):
    save_model_dir(tmp_path / "m", bundle(**MEMBERS[1]))
    model = str(tmp_path / "m")
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n")
    (tmp_path / "prefix.txt").write_text("\n".join(PREFIXES) + "\n")
    assert main(["translate", model, "-i", str(tmp_path / "in.txt"), "--prefix",
                 str(tmp_path / "prefix.txt"), "--beam", "2"]) == 0
    outputs = capsys.readouterr().out.splitlines()
    assert all(out.startswith(p) for out, p in zip(outputs, PREFIXES, strict=True))
    (tmp_path / "ref.txt").write_text("\n".join(outputs) + "\n")
    assert main(["translate", model, "-i", str(tmp_path / "in.txt"), "--score-only",
                 str(tmp_path / "ref.txt")]) == 0
    scores = [float(x) for x in capsys.readouterr().out.splitlines()]
    expected = Translator(bundle(**MEMBERS[1])).score(SENTENCES, outputs)
    assert scores == pytest.approx(expected, abs=1e-3)
    (tmp_path / "short.txt").write_text("one\ntwo\n")
    assert main(["translate", model, "-i", str(tmp_path / "in.txt"), "--prefix",
                 str(tmp_path / "short.txt")]) == 2
    assert f"--prefix {tmp_path / 'short.txt'} has 2 lines; the input has 4" in \
        capsys.readouterr().err
    assert main(["translate", model, "-i", str(tmp_path / "in.txt"), "--score-only",
                 str(tmp_path / "ref.txt"), "--n-best", "2"]) == 2
    assert "--n-best cannot go with it" in capsys.readouterr().err
    with pytest.raises(UsageError, match="2 prefixes for 4 input lines"):
        Translator(bundle()).translate_nbest(SENTENCES, prefixes=["a", "b"])
