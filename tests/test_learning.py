"""Models actually learn: the seed example for each cell type, and a real CMUdict sample."""

import pytest

from rnnseq.config import Config
from rnnseq.data.builtin import TOY_SOURCES, TOY_TARGETS, cmudict_splits
from rnnseq.inference.translator import load
from rnnseq.metrics import score
from rnnseq.training.trainer import train

from .conftest import write_tsv


def words(ids):
    return " ".join(str(i) for i in ids)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("attention", ["none", "luong_general"])
def test_seed_example_is_learned_exactly(tmp_path, cell, attention):
    """Inputs [1,2,3],[4,5,6],[7,8,9] -> targets [2,4,6],[3,5,7],[1,6,9], every cell type."""
    pairs = [(words(s), words(t)) for s, t in zip(TOY_SOURCES, TOY_TARGETS, strict=True)]
    write_tsv(tmp_path / "toy.tsv", pairs)
    config = Config.from_dict({
        "data": {"train_tsv": str(tmp_path / "toy.tsv")},
        "model": {"cell": cell, "attention": attention, "hidden_size": 32,
                  "embedding_size": 16, "dropout": 0.0},
        "train": {"out_dir": str(tmp_path / "m"), "batch_size": 3, "max_steps": 300,
                  "valid_every": 300, "lr": 0.005, "label_smoothing": 0.0,
                  "progress": False},
    })
    train(config)
    out = load(str(tmp_path / "m" / "best")).translate([p[0] for p in pairs], beam_size=1)
    assert out == [p[1] for p in pairs]


@pytest.mark.slow
def test_overfits_200_cmudict_words(tmp_path):
    """A small real sample is memorised: training-set SER near zero."""
    sample = list(cmudict_splits()["train"].items())[1000:1200]
    pairs = [(w, p[0]) for w, p in sample]
    write_tsv(tmp_path / "g2p.tsv", pairs)
    config = Config.from_dict({
        "data": {"train_tsv": str(tmp_path / "g2p.tsv"), "src_tokenizer": "char"},
        "model": {"cell": "gru", "hidden_size": 128, "embedding_size": 32, "dropout": 0.0},
        "train": {"out_dir": str(tmp_path / "m"), "batch_size": 20, "max_steps": 800,
                  "valid_every": 800, "lr": 0.005, "label_smoothing": 0.0,
                  "progress": False},
    })
    train(config)
    hyps = load(str(tmp_path / "m" / "best")).translate([w for w, _ in pairs], beam_size=1)
    ser = score("ser", hyps, [[p] for _, p in pairs]).value
    assert ser <= 2.0, f"training-set SER {ser:.1f} %"
