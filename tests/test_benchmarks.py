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


# -- the peers harness (benchmarks/peers/compare.py); the peers themselves are opt-in ---------
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))

import compare  # noqa: E402

ONMT_LOG = """\
[2026-11-20 10:00:01,000 INFO] Step 10/   50; acc: 5.1; ppl: 2301.2; xent: 7.7; lr: 0.00100; \
sents:     640; bsz:   12/  14/64; 1301/1499 tok/s;      6 sec;
[2026-11-20 10:00:06,000 INFO] Step 20/   50; acc: 9.8; ppl: 801.0; xent: 6.7; lr: 0.00100; \
sents:     640; bsz:   12/  14/64; 1420/1650 tok/s;     11 sec;
[2026-11-20 10:00:11,000 INFO] Step 30/   50; acc: 12.0; ppl: 500.1; xent: 6.2; lr: 0.00100; \
sents:     640; bsz:   12/  14/64; 1400/1630 tok/s;     16 sec;
[2026-11-20 10:00:16,000 INFO] Step 40/   50; acc: 14.2; ppl: 401.9; xent: 6.0; lr: 0.00100; \
sents:     640; bsz:   12/  14/64; 1440/1660 tok/s;     21 sec;
"""
JOEY_LOG = """\
2026-11-20 10:00:01,000 - INFO - joeynmt.training - Epoch   1, Step:       10, \
Batch Loss:   450.123456, Batch Acc: 0.050000, Tokens per Sec:      700, Lr: 0.001000
2026-11-20 10:00:12,000 - INFO - joeynmt.training - Epoch   1, Step:       20, \
Batch Loss:   400.123456, Batch Acc: 0.080000, Tokens per Sec:      810, Lr: 0.001000
2026-11-20 10:00:23,000 - INFO - joeynmt.training - Epoch   1, Step:       30, \
Batch Loss:   380.123456, Batch Acc: 0.090000, Tokens per Sec:      790, Lr: 0.001000
"""


def test_peer_logs_are_parsed_into_steady_rates():
    assert compare.onmt_windows(ONMT_LOG) == [(10, 1499.0), (20, 1650.0), (30, 1630.0),
                                              (40, 1660.0)]
    # windows that start after the 10 warm-up steps: 11-20, 21-30, 31-40
    assert compare.steady_rate(compare.onmt_windows(ONMT_LOG), 10) == 1650.0
    assert compare.steady_rate(compare.joey_windows(JOEY_LOG), 10) == 800.0
    log = "[INFO] Total translation time (s): 3.4\n[INFO] Average translation time (ms): 3.2\n"
    assert compare.onmt_sentences_per_second(log) == pytest.approx(312.5)
    with pytest.raises(RuntimeError, match="too few"):
        compare.steady_rate(compare.onmt_windows(ONMT_LOG)[:1], 0)
    with pytest.raises(RuntimeError, match="no report window"):
        compare.steady_rate(compare.onmt_windows(ONMT_LOG), 40)


def test_peer_configs_point_at_the_work_folder(tmp_path):
    onmt = compare.onmt_config(tmp_path, 60, 10, 10 ** 6, "speed")
    assert onmt["data"]["corpus_1"]["path_src"] == str(tmp_path / "data" / "train.de")
    assert (onmt["train_steps"], onmt["report_every"], onmt["num_workers"]) == (60, 10, 0)
    assert onmt["rnn_type"] == "LSTM" and onmt["global_attention"] == "general"
    joey = compare.joey_config(tmp_path, 60, 10, "speed", beam=1)
    assert joey["data"]["test"] == str(tmp_path / "data" / "test2016")
    assert joey["training"]["updates"] == 60 and joey["testing"]["beam_size"] == 1
    assert joey["model"]["decoder"]["input_feeding"] is True


def test_runs_alternate_between_systems_each_round():
    runs = compare.schedule(["rnnseq", "onmt", "joey"], ["rnnseq", "onmt"], ["train", "beam5"],
                            2, ["beam5-int8"])
    assert runs[:6] == [(0, "rnnseq", "train", "fp32"), (0, "onmt", "train", "fp32"),
                        (0, "joey", "train", "fp32"), (0, "rnnseq", "beam5", "fp32"),
                        (0, "onmt", "beam5", "fp32"), (0, "rnnseq", "beam5", "int8")]
    assert len(runs) == 12 and runs[6][0] == 1


def test_table_prints_ratios_against_each_peer():
    results = {
        ("train", "fp32"): {"rnnseq": [{"value": 2000.0, "rss": 1000}],
                            "onmt": [{"value": 1600.0, "rss": 2400}],
                            "joey": [{"value": 800.0, "rss": 1300}]},
        ("startup", "fp32"): {"rnnseq": [{"value": 1.5, "rss": 300}],
                              "onmt": [{"value": 3.0, "rss": 500}]},
        ("beam5", "int8"): {"rnnseq": [{"value": 320.0, "rss": 400}]},
        ("beam5", "fp32"): {"onmt": [{"value": 100.0, "rss": 500}]},
    }
    text = compare.table(results, ["rnnseq", "onmt", "joey"])
    lines = text.splitlines()
    assert lines[0].startswith("| measure | rnnseq | OpenNMT-py | JoeyNMT | rnnseq / OpenNMT-py")
    assert "| 1.25× | 2.50× |" in lines[2]  # training: 2000/1600 and 2000/800
    assert "| 2.00× | – |" in lines[3]  # start-up: peer time over ours
    assert "beam5 (sent/s), rnnseq int8" in lines[4] and "3.20×" in lines[4]


def test_compare_dry_run_lists_the_schedule():
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "peers" / "compare.py"
    out = subprocess.run([sys.executable, str(script), "--dry-run", "--rounds", "1",
                          "--measures", "train,greedy", "--rnnseq-extra", "train-bf16"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["round 1: rnnseq train fp32", "round 1: OpenNMT-py train fp32",
                   "round 1: JoeyNMT train fp32", "round 1: rnnseq train bf16",
                   "round 1: rnnseq greedy fp32", "round 1: OpenNMT-py greedy fp32",
                   "round 1: JoeyNMT greedy fp32"]
    bad = subprocess.run([sys.executable, str(script), "--dry-run", "--systems", "fairseq"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown system 'fairseq'" in bad.stderr


# -- the serving load test (benchmarks/serve_load.py) -------------------------------------------
import serve_load  # noqa: E402


def test_serve_load_percentiles_and_table():
    load = serve_load.Load(100, 2.0, [i / 1000 for i in range(1, 101)], 0)
    assert load.percentile(50) == pytest.approx(0.051)
    assert load.percentile(95) == pytest.approx(0.096)
    assert load.percentile(99) == pytest.approx(0.1)
    slow = serve_load.Load(100, 10.0, [0.5] * 98, 2)
    results = {("rnnseq", 32): (load, 400.0), ("onmt", 32): (slow, 560.0)}
    text = serve_load.table(results, baseline=100.0, clients=[32])
    assert "| rnnseq serve | 32 | 50.0 | 50% | 51 | 96 | 100 | 0 | 400 |" in text
    assert "| OpenNMT-py onmt_server | 32 | 9.8 | 10% | 500 | 500 | 500 | 2 | 560 |" in text
    assert "| 32 | 5.1x | 0.19 |" in text


def test_time_to_bleu_times_checkpoints_from_their_files(tmp_path):
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))
    from time_to_bleu import timed_checkpoints

    start = 1_000_000.0
    for name, written in [("step-0000400", 90.0), ("step-0000200", 40.0), ("best", 95.0),
                          ("model_step_200.pt", 30.0)]:
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (start + written, start + written))
    assert [(s, t) for s, t, _ in timed_checkpoints(tmp_path, r"step-0*(\d+)", start)] == \
        [(200, 40.0), (400, 90.0)]
    assert [(s, t) for s, t, _ in timed_checkpoints(tmp_path, r"model_step_(\d+)\.pt", start)] \
        == [(200, 30.0)]


def test_time_to_bleu_takes_joeynmt_validation_off_its_clock():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))
    from time_to_bleu import joey_validation_seconds

    log = """\
2026-11-30 12:00:01,000 - INFO - joeynmt.training - Epoch   1, Step:      100, Tokens per Sec: 1011
2026-11-30 12:00:02,000 - INFO - joeynmt.prediction - Generation took 0.2500[sec].
2026-11-30 12:00:02,100 - INFO - joeynmt.prediction - Evaluation result (greedy): bleu:  12.50, \
loss:  40.10, ppl:  30.00, acc:   0.20, 0.0500[sec]
2026-11-30 12:00:02,300 - INFO - joeynmt.training - Checkpoint saved in /w/joey/time/100.ckpt.
2026-11-30 12:01:02,000 - INFO - joeynmt.prediction - Generation took 0.5000[sec].
2026-11-30 12:01:02,100 - INFO - joeynmt.prediction - Evaluation result (greedy): bleu:  20.00, \
loss:  30.00, ppl:  20.00, acc:   0.30, 0.2000[sec]
2026-11-30 12:01:02,300 - INFO - joeynmt.training - Checkpoint saved in /w/joey/time/200.ckpt.
"""
    seconds = joey_validation_seconds(log)
    assert seconds.keys() == {100, 200}
    assert abs(seconds[100] - 0.3) < 1e-9 and abs(seconds[200] - 1.0) < 1e-9


def test_train_profile_times_each_kind_of_multiply_alone():
    import torch
    from train_profile import alone

    for op, shapes in [("aten::mm", [[8, 4], [4, 3]]), ("aten::addmm", [[3], [8, 4], [4, 3]]),
                       ("aten::bmm", [[2, 8, 4], [2, 4, 3]])]:
        for dtype in (torch.float32, torch.bfloat16):
            seconds = alone(op, shapes, dtype, rounds=2)
            assert 0 < seconds < 1


def test_decode_profile_ceiling_takes_the_faster_form():
    from decode_profile import ceiling

    from tests.conftest import tiny_model

    rates = ceiling(tiny_model(hidden_size=16, embedding_size=8).decoder, 4, rounds=2)
    assert set(rates) == {"recurrent step, layer 1", "output layer"}
    assert all(r > 0 for r in rates.values())
