"""One normalization for text entering a model: training, validation, translate (files, stdin,
API); the options (nfc, nfd, nfkc, nfkd, none, per side) and what decomposition does to a
character vocabulary."""

import os
import random
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from rnnseq.cli import main
from rnnseq.config import Config, ConfigError, DataConfig
from rnnseq.data.corpus import ParallelCorpus
from rnnseq.data.dataset import build_vocabulary
from rnnseq.data.normalize import NORMALIZATIONS, TextNormalizer, side_normalizer
from rnnseq.data.tokenizers import build_tokenizer
from rnnseq.data.vocab import SPECIALS, UNK_ID
from rnnseq.inference.translator import load
from rnnseq.training.trainer import train

from .conftest import write_tsv


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# -- the normalizer ---------------------------------------------------------------------------
def test_forms_do_what_unicode_says():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert TextNormalizer("nfc")(decomposed) == composed
    assert TextNormalizer("nfd")(composed) == decomposed
    assert TextNormalizer("nfkc")("\ufb01n \uff21\u00b2") == "fin A2"  # ligature, full width
    assert TextNormalizer("nfkd")("\ufb01anc\u00e9") == "fiance\u0301"
    assert TextNormalizer("none")(f"  {decomposed}\t") == decomposed  # only stripped
    assert TextNormalizer("nfc", lowercase=True)(" CAFE\u0301 ") == "caf\u00e9"
    assert TextNormalizer("nfd")("\ud55c") == "\u1112\u1161\u11ab"  # a Hangul syllable: 3 jamo


def test_only_decomposed_sides_are_recomposed():
    assert TextNormalizer("nfd").recompose("cafe\u0301") == "caf\u00e9"
    assert TextNormalizer("nfkd").recompose("\u1112\u1161\u11ab") == "\ud55c"
    for form in ("nfc", "nfkc", "none"):
        assert TextNormalizer(form).recompose("cafe\u0301") == "cafe\u0301"
    assert TextNormalizer("nfd").reference(" Cafe\u0301 ") == "Caf\u00e9"


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="expected one of nfc, nfd, nfkc, nfkd, none"):
        TextNormalizer("nfx")


# -- the config --------------------------------------------------------------------------------
def test_config_options_per_side_and_their_errors(tmp_path):
    d = DataConfig()
    assert (d.normalization("src"), d.normalization("tgt")) == ("nfc", "nfc")  # as before
    d = DataConfig(normalize="nfkc", tgt_normalize="nfd", tgt_lowercase=True)
    assert d.normalization("src") == "nfkc"
    assert side_normalizer(d, "tgt") == TextNormalizer("nfd", lowercase=True)
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  src_tokenizer: char\n  normalize: nfx\n")
    with pytest.raises(ConfigError) as err:
        Config.load(path)
    assert f"{path}:3: data.normalize: expected one of nfc, nfd, nfkc, nfkd, none" in str(err.value)
    path.write_text("data:\n  normalise: nfd\n")
    with pytest.raises(ConfigError, match="did you mean 'normalize'"):
        Config.load(path)
    with pytest.raises(ConfigError, match="data.shared_vocab needs one normalization"):
        Config.from_dict({"data": {"shared_vocab": True, "src_normalize": "nfd"}})
    assert set(NORMALIZATIONS) == {"nfc", "nfd", "nfkc", "nfkd", "none"}


# -- decomposition and character vocabularies -------------------------------------------------
def hangul_words(n: int, seed: int = 0) -> list[str]:
    """Words of 1-4 random Hangul syllables (U+AC00 + 588 L + 28 V + T)."""
    rng = random.Random(seed)
    return ["".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(1, 4)))
            for _ in range(n)]


def jamo_of(syllable: str) -> set[str]:
    """The conjoining jamo of a precomposed syllable, by Unicode's Hangul arithmetic."""
    index = ord(syllable) - 0xAC00
    lead, vowel, tail = index // 588, index % 588 // 28, index % 28
    out = {chr(0x1100 + lead), chr(0x1161 + vowel)}
    return out | ({chr(0x11A7 + tail)} if tail else set())


LATIN_MARKS = ["\u0301", "\u0300", "\u0302", "\u0308", "\u0303", "\u030c", "\u0327"]


def accented_words(n: int, seed: int = 0) -> list[str]:
    """Latin words whose letters often carry one combining mark, composed (NFC)."""
    rng = random.Random(seed)
    words = []
    for _ in range(n):
        letters = [rng.choice("aceinosuyzAEIOU")
                   + (rng.choice(LATIN_MARKS) if rng.random() < 0.5 else "")
                   for _ in range(rng.randint(2, 8))]
        words.append(nfc("".join(letters)))
    return words


def char_types(words: list[str], form: str) -> int:
    cfg = DataConfig(src_tokenizer="char", tgt_tokenizer="char", normalize=form)
    corpus = ParallelCorpus(words, words, "constructed", list(range(1, len(words) + 1)))
    return len(build_vocabulary(cfg, corpus).src_vocab) - len(SPECIALS)


def test_nfd_turns_hangul_syllables_into_jamo():
    words = hangul_words(400)
    syllables = set("".join(words))
    jamo = set().union(*(jamo_of(s) for s in syllables))
    assert char_types(words, "nfc") == len(syllables) > 800
    assert char_types(words, "nfd") == len(jamo) <= 19 + 21 + 27
    assert char_types([nfd(w) for w in words], "nfc") == len(syllables)  # NFC composes input


def test_nfd_turns_accented_letters_into_base_and_mark():
    words = accented_words(500)
    letters = set("".join(words))
    assert char_types(words, "nfc") == len(letters)
    bases_and_marks = set(nfd("".join(words)))
    assert char_types(words, "nfd") == len(bases_and_marks)
    assert len(bases_and_marks) <= 15 + len(LATIN_MARKS) < len(letters)


@pytest.mark.parametrize("kind", ["char", "word", "sentencepiece"])
@pytest.mark.parametrize("form", ["nfd", "nfkd"])
def test_decomposed_text_round_trips_to_composed(kind, form):
    words = hangul_words(200, seed=1) + accented_words(200, seed=1)
    lines = [" ".join(words[i : i + 3]) for i in range(0, len(words), 3)]
    tok = build_tokenizer(kind, lines, normalizer=TextNormalizer(form), vocab_size=600)
    for line in lines:
        tokens = tok.encode(line)
        assert tokens == tok.encode(nfd(line))  # composed or decomposed input: same tokens
        assert all(unicodedata.is_normalized(form.upper(), t) for t in tokens)
        assert tok.decode(tokens) == nfc(line)  # outputs come back composed, exactly


# -- one path into the model: training, validation, translate ---------------------------------
ACCENTED = ["café", "naïve", "résumé", "über", "señor", "façade", "élan", "crème", "piñata",
            "jalapeño", "déjà", "zoë"]


def tiny_config(tmp_path: Path, **data) -> Config:
    pairs = [(w, " ".join(w.upper())) for w in ACCENTED]
    write_tsv(tmp_path / "train.tsv", pairs)
    write_tsv(tmp_path / "valid.tsv", pairs[:4])
    return Config.from_dict({
        "data": {"train_tsv": str(tmp_path / "train.tsv"),
                 "valid_tsv": str(tmp_path / "valid.tsv"), "src_tokenizer": "char",
                 "tgt_tokenizer": "word", **data},
        "model": {"cell": "gru", "hidden_size": 32, "embedding_size": 16, "dropout": 0.0},
        "train": {"out_dir": str(tmp_path / "model"), "batch_size": 4, "max_steps": 30,
                  "valid_every": 30, "lr": 0.01, "valid_metric": "ser", "progress": False},
        "decode": {"beam_size": 3},
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained on composed (NFC) text with the default normalization."""
    tmp_path = tmp_path_factory.mktemp("nfc-model")
    train(tiny_config(tmp_path))
    return tmp_path / "model" / "best"


def test_composed_and_decomposed_inputs_give_identical_outputs(trained):
    translator = load(str(trained))
    composed, decomposed = ACCENTED, [nfd(w) for w in ACCENTED]
    assert composed != decomposed
    bundle = translator.bundle
    for a, b in zip(composed, decomposed, strict=True):
        ids = bundle.src_vocab.encode(bundle.src_tokenizer.encode(b))
        assert ids == bundle.src_vocab.encode(bundle.src_tokenizer.encode(a))
        assert UNK_ID not in ids  # every symbol of the decomposed input is known
    for beam in (1, 3):
        assert (translator.translate(composed, beam_size=beam, return_scores=True)
                == translator.translate(decomposed, beam_size=beam, return_scores=True))
    nbest = translator.translate_nbest([f"  {decomposed[0]} "], beam_size=3, n_best=3,
                                       return_attention=True)[0]
    assert nbest[0].source_tokens == list("café")  # what the attention columns are
    assert len(nbest[0].attention[0]) == 4


def test_cli_file_and_stdin_normalize_alike(trained, tmp_path, capsys):
    (tmp_path / "nfc.txt").write_text("\n".join(ACCENTED) + "\n", encoding="utf-8")
    (tmp_path / "nfd.txt").write_text("\n".join(nfd(w) for w in ACCENTED) + "\n",
                                      encoding="utf-8")
    for name in ("nfc", "nfd"):
        assert main(["translate", str(trained), "-i", str(tmp_path / f"{name}.txt"),
                     "-o", str(tmp_path / f"{name}.out"), "--scores"]) == 0
    expected = (tmp_path / "nfc.out").read_text(encoding="utf-8")
    assert (tmp_path / "nfd.out").read_text(encoding="utf-8") == expected
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "rnnseq"), "translate", str(trained), "--scores"],
        input=(tmp_path / "nfd.txt").read_text(encoding="utf-8"), capture_output=True,
        text=True, encoding="utf-8", timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected


def test_normalization_is_saved_with_the_model_and_used_by_translate(tmp_path):
    train(tiny_config(tmp_path, src_normalize="nfd"))
    model_dir = tmp_path / "model" / "best"
    saved = Config.load(model_dir / "config.yaml").data
    assert (saved.normalization("src"), saved.normalization("tgt")) == ("nfd", "nfc")
    translator = load(str(model_dir))
    assert translator.bundle.src_tokenizer.normalizer == TextNormalizer("nfd")
    vocab = set(translator.bundle.src_vocab.itos)
    assert "\u0301" in vocab and "é" not in vocab  # trained on decomposed symbols
    out = translator.translate(ACCENTED, return_scores=True)
    assert out == translator.translate([nfd(w) for w in ACCENTED], return_scores=True)
    nbest = translator.translate_nbest(["café"], return_attention=True)[0][0]
    assert nbest.source_tokens == ["c", "a", "f", "e", "\u0301"]


def test_char_target_outputs_are_recomposed(tmp_path):
    cfg = tiny_config(tmp_path, tgt_tokenizer="char", tgt_normalize="nfd")
    copy = [(w, w) for w in ACCENTED]
    write_tsv(tmp_path / "train.tsv", copy)
    write_tsv(tmp_path / "valid.tsv", copy[:4])
    cfg.train.max_steps = 2
    train(cfg)
    translator = load(str(tmp_path / "model" / "best"))
    vocab = set(translator.bundle.tgt_vocab.itos)
    assert "\u0301" in vocab and "é" not in vocab
    for text in translator.translate(ACCENTED):
        assert unicodedata.is_normalized("NFC", text)


def test_validation_groups_and_scores_as_the_model_reads(tmp_path, monkeypatch):
    """Validation sources are grouped after normalization and references are compared in the
    form outputs take: a decomposed reference matches a (recomposed) output."""
    import rnnseq.training.trainer as trainer_module

    copy = [(w, w) for w in ACCENTED[:4]]
    cfg = tiny_config(tmp_path, tgt_tokenizer="char", normalize="nfd")
    write_tsv(tmp_path / "train.tsv", copy)
    # every word twice: composed, then decomposed on both sides
    write_tsv(tmp_path / "valid.tsv", copy + [(nfd(s), nfd(t)) for s, t in copy])
    cfg.train.max_steps = 2
    cfg.train.valid_every = 2
    seen: list[list[str]] = []

    class PerfectTranslator:  # answers each source with its target, composed
        def __init__(self, *args, **kwargs) -> None:
            pass

        def translate(self, sentences, **kwargs):
            seen.append(list(sentences))
            return [nfc(s) for s in sentences]

    monkeypatch.setattr(trainer_module, "Translator", PerfectTranslator)
    result = train(cfg)
    assert seen and all(len(batch) == 4 for batch in seen)  # 8 lines, 4 distinct sources
    assert all(unicodedata.is_normalized("NFD", s) for s in seen[0])
    assert result.history[-1]["ser"] == 0.0
