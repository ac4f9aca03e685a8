"""Ensembles: several models decoding as one, through the same search contract."""

import math

import pytest
import torch

from rnnseq.cli import main
from rnnseq.config import Config
from rnnseq.data.normalize import side_normalizer
from rnnseq.data.tokenizers import CharTokenizer, WordTokenizer
from rnnseq.data.vocab import Vocab
from rnnseq.errors import UsageError
from rnnseq.inference.ensemble import EnsembleDecoder, EnsembleState
from rnnseq.inference.search import beam_search, greedy_search, max_lengths
from rnnseq.inference.translator import Translator, load
from rnnseq.model.seq2seq import Seq2Seq
from rnnseq.modeldir import ModelBundle, save_model_dir

from .test_data import TEXTS

SENTENCES = ["Ein Mann fährt Fahrrad.", "Die Sonne.", "Zwei Hunde spielen im Schnee.", ""]


def bundle(seed=0, texts=TEXTS, data=None, **model) -> ModelBundle:
    """An untrained model over vocabularies built from ``texts`` (chars -> words)."""
    torch.manual_seed(seed)
    cfg = {"hidden_size": 16, "embedding_size": 8, "layers": 1, "cell": "lstm",
           "attention": "bahdanau", **model}
    config = Config.from_dict({"model": cfg, "decode": {"beam_size": 3},
                               "data": {"src_tokenizer": "char", **(data or {})}})
    kind = CharTokenizer if config.data.src_tokenizer == "char" else WordTokenizer
    src_tok = kind(side_normalizer(config.data, "src"))
    tgt_tok = WordTokenizer(side_normalizer(config.data, "tgt"))
    src_vocab = Vocab.build([src_tok.encode(t) for t in texts])
    tgt_vocab = Vocab.build([tgt_tok.encode(t) for t in texts])
    net = Seq2Seq(config, len(src_vocab), len(tgt_vocab)).eval()
    return ModelBundle(config, net, src_vocab, tgt_vocab, src_tok, tgt_tok)


MEMBERS = [
    {"cell": "lstm", "attention": "bahdanau"},
    {"cell": "gru", "attention": "luong_general", "input_feeding": True, "layers": 2},
    {"cell": "rnn", "attention": "none"},
    {"cell": "lstm", "attention": "luong_dot", "copy_attention": True, "coverage": True},
]


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("mixture", ["probability", "log-linear"])
@pytest.mark.parametrize("beam", [1, 3])
def test_an_ensemble_of_a_model_with_itself_is_that_model(member, mixture, beam):
    b = bundle(**member)
    alone = Translator(b).translate_nbest(SENTENCES, beam_size=beam, n_best=beam,
                                          return_attention=True)
    twice = Translator([b, b], mixture=mixture).translate_nbest(
        SENTENCES, beam_size=beam, n_best=beam, return_attention=True)
    for one, two in zip(alone, twice, strict=True):
        assert [h.tokens for h in one] == [h.tokens for h in two]
        for h1, h2 in zip(one, two, strict=True):
            assert h1.score == pytest.approx(h2.score, abs=1e-4)
            if h1.attention is not None:
                assert torch.tensor(h1.attention).allclose(torch.tensor(h2.attention),
                                                           atol=1e-6)


def test_the_mixtures_combine_the_members_distributions():
    members = [bundle(seed=s, **m) for s, m in enumerate(MEMBERS)]
    models = [b.model for b in members]
    translator = Translator(members)
    inputs = translator._inputs(SENTENCES[:2])
    batches = translator.backend._collate(inputs.tokens, inputs.src_map)
    states = [m.init_state(m.encode(b.src, b.src_lengths), b.src_map)
              for m, b in zip(models, batches, strict=True)]
    prev = torch.tensor([1, 1])  # <s>
    singles = [m.decoder.step(prev, s)[0] for m, s in zip(models, states, strict=True)]
    size = max(lp.shape[-1] for lp in singles)  # the copy member adds source-only words
    padded = torch.stack([torch.nn.functional.pad(lp, (0, size - lp.shape[-1]),
                                                  value=-math.inf) for lp in singles])
    for mixture, expected in [
        ("probability", padded.exp().mean(0).log()),
        ("log-linear", torch.log_softmax(padded.mean(0), -1)),
    ]:
        lp, state, attention = EnsembleDecoder([m.decoder for m in models], mixture).step(
            prev, EnsembleState(tuple(states)))
        assert lp.shape == (2, size)
        finite = expected.isfinite()
        assert torch.equal(lp.isfinite(), finite)
        assert lp[finite].allclose(expected[finite], atol=1e-5)
        if mixture == "probability":
            assert lp.exp().sum(-1).allclose(torch.ones(2), atol=1e-5)
        assert attention.shape == (2, batches[0].src.shape[1])  # the mean of those with one


def test_a_mixed_ensemble_is_batch_invariant_and_beam_one_is_greedy():
    translator = Translator([bundle(seed=s, **m) for s, m in enumerate(MEMBERS)])
    together = translator.translate_nbest(SENTENCES, beam_size=3, n_best=2)
    for i, sentence in enumerate(SENTENCES):
        alone = translator.translate_nbest([sentence], beam_size=3, n_best=2)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
    inputs = translator._inputs(SENTENCES)
    batches = translator.backend._collate(inputs.tokens, inputs.src_map)

    models = translator.backend.models

    def state():
        return EnsembleState(tuple(m.init_state(m.encode(b.src, b.src_lengths), b.src_map)
                                   for m, b in zip(models, batches, strict=True)))

    decoder = EnsembleDecoder([m.decoder for m in translator.backend.models])
    limits = max_lengths(batches[0].src_lengths.tolist(), 2.0, 20)
    greedy, beam1 = greedy_search(decoder, state(), limits), beam_search(decoder, state(),
                                                                         limits, 1)
    for g, b in zip(greedy, beam1, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, rel=1e-6, abs=1e-5)  # fp32 sums


def test_members_must_read_and_write_alike(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_model_dir(a, bundle())
    save_model_dir(b, bundle(texts=TEXTS + ["Ein Vogel singt laut."]))
    with pytest.raises(UsageError, match=f"target vocabulary: {b} has .* {a}"):
        load([str(a), str(b)])
    c = tmp_path / "c"
    save_model_dir(c, bundle(data={"src_normalize": "nfd"}))
    with pytest.raises(UsageError, match=f"source tokenizer of {c}"):
        load([str(a), str(c)])


def test_translate_takes_several_models(tmp_path, capsys):
    dirs = []
    for seed, member in enumerate(MEMBERS[:3]):
        dirs.append(tmp_path / f"m{seed}")
        save_model_dir(dirs[-1], bundle(seed=seed, **member))
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES[:3]) + "\n")
    expected = load([str(d) for d in dirs], mixture="log-linear").translate(
        SENTENCES[:3], return_scores=True)
    assert main(["translate", *map(str, dirs), "-i", str(src), "--scores",
                 "--ensemble-mixture", "log-linear"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [t for t, _ in expected]
    for line, (_, score) in zip(lines, expected, strict=True):
        assert float(line.split("\t")[1]) == pytest.approx(score, abs=1e-3)
