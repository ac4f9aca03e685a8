"""Reading, validating, tokenizing, vocabularies and batching."""

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnseq.config import DataConfig
from rnnseq.data.batching import collate, make_batches
from rnnseq.data.corpus import DataError, filter_pairs, read_lines, read_parallel, read_tsv
from rnnseq.data.dataset import build_vocabulary, encode_corpus
from rnnseq.data.normalize import TextNormalizer
from rnnseq.data.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    WordTokenizer,
    load_tokenizer,
)
from rnnseq.data.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Vocab


def test_line_count_mismatch_names_both_files(tmp_path):
    (tmp_path / "a.src").write_text("x\ny\nz\n")
    (tmp_path / "a.tgt").write_text("x\ny\n")
    with pytest.raises(DataError) as err:
        read_parallel(tmp_path / "a.src", tmp_path / "a.tgt")
    msg = str(err.value)
    assert "a.src has 3 lines" in msg and "a.tgt has 2" in msg


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\nfine\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"bad\.txt:3: invalid UTF-8"):
        read_lines(path)


def test_nul_byte_and_missing_file(tmp_path):
    path = tmp_path / "nul.txt"
    path.write_bytes(b"a\nb\x00c\n")
    with pytest.raises(DataError, match=r"nul\.txt:2: contains a NUL byte"):
        read_lines(path)
    with pytest.raises(DataError, match="file not found"):
        read_lines(tmp_path / "missing.txt")


def test_bom_and_crlf_are_handled(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\r\nworld\r\n")
    assert read_lines(path) == ["hello", "world"]


@pytest.mark.parametrize("line, tabs", [("no tab here", 0), ("a\tb\tc", 2)])
def test_tsv_needs_exactly_one_tab(tmp_path, line, tabs):
    path = tmp_path / "pairs.tsv"
    path.write_text(f"x\ty\n{line}\n")
    with pytest.raises(DataError, match=rf"pairs\.tsv:2: expected exactly one tab.*found {tabs}"):
        read_tsv(path)


def test_empty_files_are_refused(tmp_path):
    (tmp_path / "e.tsv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_tsv(tmp_path / "e.tsv")


def test_filter_counts_empty_and_long_pairs(caplog, tmp_path):
    keep, report = filter_pairs([["a"], [], ["a"] * 5, ["b"]], [["x"], ["y"], ["z"], []], 3)
    assert keep == [0]
    assert (report.kept, report.empty, report.too_long) == (1, 2, 1)
    path = tmp_path / "d.tsv"
    path.write_text("a b\tx\n \ty\na b c d e\tz\nb\t \n")
    corpus = read_tsv(path)
    vocab = build_vocabulary(DataConfig(max_len=3), corpus)
    with caplog.at_level(logging.INFO, logger="rnnseq"):
        data = encode_corpus(corpus, vocab, DataConfig(max_len=3), "training data")
    assert len(data) == 1
    assert "kept 1 pairs, dropped 2 with an empty side and 1 longer than max_len" in caplog.text


def test_long_pairs_are_truncated_per_side(caplog, tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("a b c d e f\tx y z\na\tx\nb c\tx y z w v\n")
    corpus = read_tsv(path)
    cfg = DataConfig(max_len=3, max_src_len=4)  # sources cut at 4; targets still dropped at 3
    vocab = build_vocabulary(cfg, corpus)
    assert "f" not in vocab.src_vocab.stoi and "e" not in vocab.src_vocab.stoi
    assert "w" not in vocab.tgt_vocab.stoi  # the dropped pair's target is not in the vocabulary
    with caplog.at_level(logging.INFO, logger="rnnseq"):
        data = encode_corpus(corpus, vocab, cfg, "training data")
    assert [len(s) for s in data.src] == [4, 1] and [len(t) for t in data.tgt] == [3, 1]
    assert data.src_text[0] == "a b c d e f"  # the text is kept as it was read
    assert ("kept 2 pairs, dropped 0 with an empty side and 1 longer than max_len; truncated "
            "1 sources to max_src_len and 0 targets to max_tgt_len") in caplog.text
    cfg = DataConfig(max_len=3, max_src_len=4, max_tgt_len=2)
    data = encode_corpus(corpus, build_vocabulary(cfg, corpus), cfg, "training data")
    assert [len(t) for t in data.tgt] == [2, 1, 2]
    # validation data is scored whole: no limits
    assert [len(s) for s in encode_corpus(corpus, vocab, None, "validation data").src] == [6, 1, 2]


def test_char_and_word_tokenizers():
    char = CharTokenizer()
    assert char.encode("ab c") == ["a", "b", " ", "c"]
    assert char.decode(char.encode(" a  b ")) == "a  b"  # inputs are stripped, as in training
    assert CharTokenizer(TextNormalizer(lowercase=True)).encode("AbC") == ["a", "b", "c"]
    word = WordTokenizer()
    assert word.encode(" a  b\tc ") == ["a", "b", "c"]
    assert word.decode(["a", "b"]) == "a b"


TEXTS = [
    "Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch.",
    "Kinder spielen auf der Straße.", "Ein Mann mit Hut.", "Die Sonne scheint.",
] * 20


def test_sentencepiece_round_trip_and_save(tmp_path):
    tok = SentencePieceTokenizer.train(TEXTS, vocab_size=60)
    for text in TEXTS[:6] + ["Ein  Hund  liest.", "führt"]:
        assert tok.decode(tok.encode(text)) == text
    tok.save(tmp_path, "src")
    again = load_tokenizer(DataConfig(src_tokenizer="sentencepiece"), tmp_path, "src")
    assert again.encode(TEXTS[0]) == tok.encode(TEXTS[0])


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_char_tokenizer_round_trips_any_text(text):
    tok = CharTokenizer()  # NFC: round trip up to normalization
    assert tok.decode(tok.encode(text)) == tok.normalizer(text)
    raw = CharTokenizer(TextNormalizer("none"))
    assert raw.decode(raw.encode(text)) == text.strip()


def test_vocab_build_save_load(tmp_path):
    vocab = Vocab.build([["b", "a", "a"], ["c", "a", "b"]], min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "<s>", "</s>", "a", "b"]
    assert vocab.encode(["a", "zzz"]) == [4, UNK_ID]
    assert vocab.encode(["</s>", "<pad>", "<s>"]) == [UNK_ID] * 3  # text, not control ids
    assert vocab.decode([4, 5, EOS_ID, 4]) == ["a", "b"]
    assert Vocab.build([["a", "b", "b"]], max_size=1).itos[4:] == ["b"]
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").itos == vocab.itos
    (tmp_path / "bad.json").write_text('["a"]')
    with pytest.raises(ValueError, match="bad.json"):
        Vocab.load(tmp_path / "bad.json")


def test_collate_shapes_and_specials():
    b = collate([[5, 6, 7], [8]], [[9], [10, 11]], [0, 1])
    assert b.src.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert b.src_lengths.tolist() == [3, 1]
    assert b.tgt_in.tolist() == [[BOS_ID, 9, PAD_ID], [BOS_ID, 10, 11]]
    assert b.tgt_out.tolist() == [[9, EOS_ID, PAD_ID], [10, 11, EOS_ID]]
    assert b.n_tgt_tokens == 5


def test_batches_cover_everything_once_and_respect_budget():
    import random

    rng = random.Random(0)
    src = [rng.randint(1, 30) for _ in range(5000)]
    tgt = [rng.randint(1, 30) for _ in range(5000)]
    batches = make_batches(src, tgt, 200, "tokens", shuffle=True, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(5000))
    for b in batches:
        width = max(max(src[i], tgt[i] + 1) for i in b)
        assert width * len(b) <= 200 or len(b) == 1
    # same seed, same batches; another seed, another order
    assert batches == make_batches(src, tgt, 200, "tokens", shuffle=True, seed=3)
    assert batches != make_batches(src, tgt, 200, "tokens", shuffle=True, seed=4)
    sentences = make_batches(src, tgt, 64, "sentences")
    assert all(len(b) <= 64 for b in sentences)
    # bucketing keeps padding low: >= 90 % of target positions are real tokens
    real = sum(tgt[i] + 1 for b in sentences for i in b)
    padded = sum(len(b) * max(tgt[i] + 1 for i in b) for b in sentences)
    assert real / padded > 0.9


@pytest.fixture(scope="module")
def spm_with_byte_fallback():
    return SentencePieceTokenizer.train(TEXTS, vocab_size=600)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_every_tokenizer_survives_any_text(spm_with_byte_fallback, text):
    """Random unicode -> tokens -> ids -> tokens -> text never crashes and round-trips where
    the tokenizer promises it: char and SentencePiece with byte fallback exactly, word up to
    whitespace (all up to the input normalization: stripped, NFC)."""
    for tok in (CharTokenizer(), WordTokenizer(), spm_with_byte_fallback):
        tokens = tok.encode(text)
        vocab = Vocab.build([tokens])
        back = vocab.decode(vocab.encode(tokens))
        assert back == [t if t not in SPECIALS else "<unk>" for t in tokens]
        if any(t in SPECIALS for t in tokens):
            continue
        normalized = tok.normalizer(text)
        if tok.kind == "word":
            assert tok.decode(back) == " ".join(normalized.split())
        else:
            assert tok.decode(back) == normalized
