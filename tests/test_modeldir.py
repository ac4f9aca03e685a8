"""Model directories: exact round trip, no unpickling, clear errors for tampered files."""

import pickle

import pytest
import torch

from rnnseq.config import Config
from rnnseq.data.tokenizers import CharTokenizer, SentencePieceTokenizer, WordTokenizer
from rnnseq.data.vocab import Vocab
from rnnseq.inference.translator import Translator, load
from rnnseq.model.seq2seq import Seq2Seq
from rnnseq.modeldir import ModelBundle, ModelDirError, load_model_dir, save_model_dir

from .test_data import TEXTS


def make_bundle(tie=False, spm=False) -> ModelBundle:
    torch.manual_seed(0)
    model_cfg = {"hidden_size": 16, "embedding_size": 16 if tie else 8, "layers": 2,
                 "tie_embeddings": tie, "cell": "lstm", "attention": "bahdanau"}
    config = Config.from_dict({"model": model_cfg, "decode": {"beam_size": 3},
                               "data": {"src_tokenizer": "sentencepiece" if spm else "char"}})
    src_tok = SentencePieceTokenizer.train(TEXTS, 60) if spm else CharTokenizer()
    src_vocab = Vocab.build([src_tok.encode(t) for t in TEXTS])
    tgt_vocab = Vocab.build([t.split() for t in TEXTS])
    model = Seq2Seq(config, len(src_vocab), len(tgt_vocab)).eval()
    return ModelBundle(config, model, src_vocab, tgt_vocab, src_tok, WordTokenizer())


@pytest.mark.parametrize("tie, spm", [(False, False), (True, False), (False, True)])
def test_round_trip_gives_identical_outputs(tmp_path, tie, spm):
    bundle = make_bundle(tie, spm)
    save_model_dir(tmp_path, bundle)
    loaded = load_model_dir(tmp_path)
    for (n1, p1), (n2, p2) in zip(bundle.model.state_dict().items(),
                                  loaded.model.state_dict().items(), strict=True):
        assert n1 == n2 and p1.equal(p2)
    if tie:
        assert loaded.model.decoder.out.weight is loaded.model.decoder.embedding.weight
    sentences = TEXTS[:6]
    a = Translator(bundle).translate_nbest(sentences, n_best=2)
    b = load(str(tmp_path)).translate_nbest(sentences, n_best=2)
    assert [[h.text for h in x] for x in a] == [[h.text for h in x] for x in b]
    assert [[h.score for h in x] for x in a] == [[h.score for h in x] for x in b]


def test_loading_never_unpickles(tmp_path, monkeypatch):
    save_model_dir(tmp_path, make_bundle())

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    load_model_dir(tmp_path)


def test_pickle_in_directory_is_refused(tmp_path):
    save_model_dir(tmp_path, make_bundle())
    torch.save({"x": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(ModelDirError, match=r"extra\.pt: looks like a pickle"):
        load_model_dir(tmp_path)


def test_shape_mismatch_names_file_and_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    save_model_dir(tmp_path, make_bundle())
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["decoder.out.bias"] = torch.zeros(3)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelDirError, match=r"model\.safetensors: tensor 'decoder\.out\.bias' "
                       r"has shape \(3,\)"):
        load_model_dir(tmp_path)


def test_missing_tensor_and_vocab_disagreement(tmp_path):
    from safetensors.torch import load_file, save_file

    save_model_dir(tmp_path, make_bundle())
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["encoder.rnn.weight_hh_l0"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelDirError, match="'encoder.rnn.weight_hh_l0' is missing"):
        load_model_dir(tmp_path)
    save_model_dir(tmp_path, make_bundle())
    vocab = Vocab.load(tmp_path / "tgt_vocab.json")
    Vocab(vocab.itos + ["extra"]).save(tmp_path / "tgt_vocab.json")
    with pytest.raises(ModelDirError, match="vocabularies"):
        load_model_dir(tmp_path)


def test_corrupt_and_missing_files(tmp_path):
    save_model_dir(tmp_path, make_bundle())
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelDirError, match="not a readable safetensors file"):
        load_model_dir(tmp_path)
    (tmp_path / "src_vocab.json").unlink()
    with pytest.raises(ModelDirError, match="src_vocab.json: vocabulary file missing"):
        load_model_dir(tmp_path)
    (tmp_path / "config.yaml").write_text("format_version: 7\n")
    with pytest.raises(ModelDirError, match="format_version 7 is newer"):
        load_model_dir(tmp_path)
    with pytest.raises(ModelDirError, match="not found"):
        load_model_dir(tmp_path / "nowhere")


def test_api_translate_returns_strings_and_scores(tmp_path):
    import rnnseq

    save_model_dir(tmp_path, make_bundle())
    translator = rnnseq.load(str(tmp_path))
    out = translator.translate(["Ein Mann.", ""])
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    scored = translator.translate(["Ein Mann."], return_scores=True)
    assert isinstance(scored[0][1], float)


@pytest.mark.parametrize("beam", [1, 4])
def test_translator_output_independent_of_batch_size(beam):
    translator = Translator(make_bundle())
    sentences = ["Ein Mann fährt.", "", "E", "Zwei Hunde spielen im Schnee, und ein Kind liest.",
                 "Die Sonne scheint.", "x"]
    reference = translator.translate_nbest(sentences, beam_size=beam, batch_size=1)
    for batch_size in (2, 4, 64):
        for max_tokens in (8, 10_000):
            out = translator.translate_nbest(sentences, beam_size=beam, batch_size=batch_size,
                                             max_batch_tokens=max_tokens)
            for a, b in zip(reference, out, strict=True):
                assert a[0].tokens == b[0].tokens
                assert a[0].score == pytest.approx(b[0].score, abs=1e-5)
