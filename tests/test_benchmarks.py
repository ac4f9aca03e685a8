"""The benchmark helpers: tokenization of the peers' preset and the FLOP count."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from multi30k import tokenize  # noqa: E402
from presets import PRESETS, flops_per_target_token  # noqa: E402


@pytest.mark.parametrize("raw, tokens", [
    ("Two young, White males are outside.", "two young , white males are outside ."),
    ("A man's hat (red) costs $3.50!", "a man 's hat ( red ) costs $ 3.50 !"),
    ("Ein Mädchen im T-Shirt.", "ein mädchen im t-shirt ."),
    ("They don't know.", "they do n't know ."),
])
def test_tokenize_like_the_peers_data(raw, tokens):
    assert tokenize(raw) == tokens


def test_flop_count_matches_the_peers_analysis():
    # ../shared/peers/README.md: 21.8 MFLOP forward per target token at B=64, S=12.44,
    # T=14.02, V=5928; training ~65.3.
    flops = flops_per_target_token(PRESETS["multi30k-word-lstm"], 12.44 / 14.02, 12.44, 5928)
    assert flops["forward"] / 1e6 == pytest.approx(21.8, abs=0.3)
    assert flops["train"] / 1e6 == pytest.approx(65.3, abs=1.0)
    assert flops["decoder_rnn"] / flops["forward"] == pytest.approx(0.43, abs=0.02)
