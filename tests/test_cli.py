"""End-to-end: train a tiny config, translate, evaluate, resume; user errors write nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnseq.cli import main

PAIRS = [("abc", "a b c"), ("cab", "c a b"), ("bca", "b c a"), ("aab", "a a b"),
         ("bba", "b b a"), ("cca", "c c a"), ("acb", "a c b"), ("bac", "b a c")]

CONFIG = """\
data:
  train_tsv: {d}/train.tsv
  valid_tsv: {d}/valid.tsv
  src_tokenizer: char
  tgt_tokenizer: word
model:
  cell: gru
  hidden_size: 32
  embedding_size: 16
  dropout: 0.0
train:
  out_dir: {d}/model
  batch_size: 4
  max_steps: 40
  valid_every: 20
  lr: 0.01
  valid_metric: ser
  progress: false
decode:
  beam_size: 3
"""


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS))
    (tmp_path / "valid.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS[:3]))
    (tmp_path / "config.yaml").write_text(CONFIG.format(d=tmp_path))
    return tmp_path


def test_train_translate_evaluate(workdir, capsys):
    assert main(["train", str(workdir / "config.yaml")]) == 0
    assert "rnnseq translate" in capsys.readouterr().out  # tells the user what to do next
    model = workdir / "model" / "best"
    assert (model / "model.safetensors").exists() and (model / "config.yaml").exists()
    assert (workdir / "model" / "last" / "trainer_state.json").exists()
    assert (workdir / "model" / "train.log").read_text().count("validation at step") == 2
    (workdir / "in.txt").write_text("abc\ncab\n")
    assert main(["translate", str(model), "-i", str(workdir / "in.txt"),
                 "-o", str(workdir / "out.txt"), "--beam", "2"]) == 0
    out = (workdir / "out.txt").read_text().splitlines()
    assert len(out) == 2
    assert main(["translate", str(model), "-i", str(workdir / "in.txt"), "--n-best", "3",
                 "--scores"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all("\t" in line for line in lines)
    (workdir / "ref.txt").write_text("a b c\nc a b\n")
    assert main(["evaluate", "--hyp", str(workdir / "out.txt"), "--ref",
                 str(workdir / "ref.txt"), "--metric", "ser", "wer", "bleu"]) == 0
    text = capsys.readouterr().out
    assert "SER =" in text and "WER =" in text and "BLEU =" in text and "nrefs:1" in text


def test_translate_decoding_rules(workdir, capsys):
    """--min-length, --block-ngram-repeat, --coverage-penalty reach the search; bad values are
    refused with the option's name, and the config's values are the defaults."""
    assert main(["train", str(workdir / "config.yaml"), "--set", "train.max_steps=20"]) == 0
    model = str(workdir / "model" / "best")
    (workdir / "in.txt").write_text("abcabcabc\naab\nc\n")
    args = ["translate", model, "-i", str(workdir / "in.txt"), "--beam", "3"]
    capsys.readouterr()
    assert main([*args, "--min-length", "7", "--block-ngram-repeat", "3"]) == 0
    for line in capsys.readouterr().out.splitlines():
        words = line.split()
        assert len(words) >= 7, line
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        assert len(set(grams)) == len(grams), line
    assert main([*args, "--block-ngram-repeat", "1", "--block-ngram-ignore", "a", "--scores"]) == 0
    for line in capsys.readouterr().out.splitlines():
        words = [w for w in line.split("\t")[0].split() if w != "a"]
        assert len(set(words)) == len(words), line
    assert main([*args, "--coverage-penalty", "0.5", "--scores"]) == 0
    penalised = capsys.readouterr().out
    assert main([*args, "--scores"]) == 0
    assert penalised != capsys.readouterr().out  # the scores moved
    assert main([*args, "--min-length", "-1"]) == 2
    assert "min_length must be >= 0" in capsys.readouterr().err
    from rnnseq.inference.translator import load

    translator = load(model)
    translator.config.decode.min_length = 5
    assert all(len(t.split()) >= 5 for t in translator.translate(["abc", "c"]))


def test_resume_continues_and_refuses_breaking_changes(workdir, capsys):
    config = str(workdir / "config.yaml")
    assert main(["train", config, "--set", "train.max_steps=20"]) == 0
    # a second run into the same directory needs --resume
    assert main(["train", config]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", config, "--resume", "--set", "model.hidden_size=64"]) == 2
    assert "model.hidden_size changed" in capsys.readouterr().err
    assert main(["train", config, "--resume"]) == 0
    log = (workdir / "model" / "train.log").read_text()
    assert "resumed from" in log and "at step 20" in log
    assert "config change accepted: train.max_steps: 20 -> 40" in log
    assert "training stopped at step 40" in log


def test_resume_may_switch_coverage_on_and_nothing_else(workdir, capsys):
    """See et al.'s recipe: train without coverage, then continue with it. The trained weights
    carry over, the coverage weights start at zero, and the coverage loss is in the training."""
    from safetensors.torch import load_file

    config = str(workdir / "config.yaml")
    assert main(["train", config, "--set", "train.max_steps=20"]) == 0
    before = load_file(str(workdir / "model" / "last" / "model.safetensors"))
    for change in ("model.copy_attention=true", "model.attention=bahdanau"):
        assert main(["train", config, "--resume", "--set", change]) == 2
        assert "changes the model" in capsys.readouterr().err
    assert main(["train", config, "--resume", "--set", "model.coverage=true",
                 "--set", "train.max_steps=30", "--set", "train.coverage_loss_weight=2.0"]) == 0
    log = (workdir / "model" / "train.log").read_text()
    assert "model.coverage: False -> True (new parameters added)" in log
    assert "1 new parameter tensors (decoder.attention.coverage_weight)" in log
    after = load_file(str(workdir / "model" / "last" / "model.safetensors"))
    assert set(after) - set(before) == {"decoder.attention.coverage_weight"}
    assert after["decoder.attention.coverage_weight"].abs().sum() > 0  # it was trained
    assert any(not after[k].equal(before[k]) for k in before)
    # the resumed checkpoint is a coverage model: resuming again is an ordinary resume,
    # and switching coverage off again is refused
    assert main(["train", config, "--resume", "--set", "model.coverage=false"]) == 2
    assert "model.coverage changed" in capsys.readouterr().err
    assert main(["train", config, "--resume", "--set", "model.coverage=true",
                 "--set", "train.max_steps=35"]) == 0
    assert "new parameter" not in (workdir / "model" / "train.log").read_text().split(
        "at step 30")[-1]


@pytest.mark.parametrize("extra", [
    [], ["--set", "model.copy_attention=true", "model.coverage=true"],
    ["--set", "train.scheduled_sampling=linear", "train.scheduled_sampling_steps=5",
     "train.scheduled_sampling_max=0.5", "train.scheduled_sampling_choice=sample"],
], ids=["plain", "copy+coverage", "scheduled-sampling"])
def test_exact_resume_gives_identical_weights(workdir, extra):
    from safetensors.torch import load_file

    config = str(workdir / "config.yaml")
    assert main(["train", config, "--set", "train.max_steps=30", "--set", "train.valid_every=10",
                 "--out", str(workdir / "straight"), *extra]) == 0
    assert main(["train", config, "--set", "train.max_steps=10", "--set", "train.valid_every=10",
                 "--out", str(workdir / "split"), *extra]) == 0
    assert main(["train", config, "--resume", "--set", "train.max_steps=30", "--set",
                 "train.valid_every=10", "--out", str(workdir / "split"), *extra]) == 0
    a = load_file(str(workdir / "straight" / "last" / "model.safetensors"))
    b = load_file(str(workdir / "split" / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), name


def test_invalid_input_writes_nothing(tmp_path, capsys):
    (tmp_path / "a.src").write_text("x\ny\n")
    (tmp_path / "a.tgt").write_text("x\n")
    (tmp_path / "c.yaml").write_text(
        f"data:\n  train_src: {tmp_path}/a.src\n  train_tgt: {tmp_path}/a.tgt\n"
        f"train:\n  out_dir: {tmp_path}/out\n")
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "a.src has 2 lines" in err and "a.tgt has 1" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "bad.yaml").write_text("model:\n  cell: lstn\n")
    assert main(["train", str(tmp_path / "bad.yaml")]) == 2
    assert "model.cell" in capsys.readouterr().err


def test_translate_errors_leave_no_output(workdir, capsys):
    assert main(["translate", str(workdir / "nope"), "-i", "x", "-o",
                 str(workdir / "o.txt")]) == 2
    assert "model directory not found" in capsys.readouterr().err
    assert not (workdir / "o.txt").exists()


def test_evaluate_line_count_mismatch(tmp_path, capsys):
    (tmp_path / "h").write_text("a\nb\n")
    (tmp_path / "r").write_text("a\n")
    assert main(["evaluate", "--hyp", str(tmp_path / "h"), "--ref", str(tmp_path / "r"),
                 "--metric", "wer"]) == 2
    assert "line counts differ" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_streams_stdin(workdir):
    assert main(["train", str(workdir / "config.yaml"), "--set", "train.max_steps=5"]) == 0
    exe = Path(sys.executable).parent / "rnnseq"
    proc = subprocess.run(
        [str(exe), "translate", str(workdir / "model" / "best"), "--beam", "1"],
        input="abc\nbca\n", capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2


def test_stream_to_files_is_atomic(workdir, monkeypatch, capsys):
    import io
    import json

    assert main(["train", str(workdir / "config.yaml"), "--set", "train.max_steps=5"]) == 0
    model = str(workdir / "model" / "best")
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\nbca\n\n"))
    out, attn = workdir / "stream.txt", workdir / "attn.jsonl"
    assert main(["translate", model, "-o", str(out), "--attention", str(attn)]) == 0
    assert len(out.read_text().splitlines()) == 3
    records = [json.loads(line) for line in attn.read_text().splitlines()]
    assert records[0]["source"] == "abc"
    assert len(records[0]["attention"]) >= 1 and len(records[0]["attention"][0]) == 3

    # a failure part-way leaves no output file at all
    from rnnseq.inference import translator as translator_module

    calls = {"n": 0}
    real = translator_module.Translator.translate_nbest

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated crash")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(translator_module.Translator, "translate_nbest", failing)
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\nbca\n"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["translate", model, "-o", str(workdir / "partial.txt")])
    assert not (workdir / "partial.txt").exists()
    assert not list(workdir.glob(".partial.txt.*"))


def test_line_batches_from_a_pipe():
    import threading
    import time

    from rnnseq.streaming import line_batches

    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "r") as reader:
        os.write(write_fd, b"a\nb\r\nc\n")
        batches = line_batches(reader, max_lines=2)
        assert next(batches) == ["a", "b"]
        assert next(batches) == ["c"]  # answered without waiting for more input

        def late():
            time.sleep(0.2)
            os.write(write_fd, b"d\n")
            time.sleep(0.2)
            os.write(write_fd, b"e")  # last line without a newline: out at end of input
            os.close(write_fd)

        threading.Thread(target=late).start()
        assert list(batches) == [["d"], ["e"]]


def test_line_batches_reports_invalid_utf8():
    from rnnseq.errors import DataError
    from rnnseq.streaming import line_batches

    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"ok\n\xff\n")
    os.close(write_fd)
    with os.fdopen(read_fd, "r") as reader, pytest.raises(DataError, match="<stdin>:2"):
        list(line_batches(reader))


def test_plot_attention_writes_one_png_per_line(workdir, capsys):
    pytest.importorskip("matplotlib", reason="--plot-attention needs the [plot] extra")
    assert main(["train", str(workdir / "config.yaml"), "--set", "train.max_steps=10"]) == 0
    model = str(workdir / "model" / "best")
    (workdir / "in.txt").write_text("abc\ncab\nbcab\n")
    plots = workdir / "plots"
    assert main(["translate", model, "-i", str(workdir / "in.txt"), "--plot-attention",
                 str(plots)]) == 0
    files = sorted(plots.iterdir())
    assert [f.name for f in files] == ["000001.png", "000002.png", "000003.png"]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    from PIL import Image

    wide, narrow = (Image.open(files[i]).size for i in (2, 0))
    assert wide[0] >= narrow[0]  # four source tokens draw at least as wide as three


def test_set_takes_several_assignments_after_one_flag(tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS))
    (tmp_path / "valid.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS[:3]))
    (tmp_path / "config.yaml").write_text(CONFIG.format(d=tmp_path))
    assert main(["config", "--check", str(tmp_path / "config.yaml"), "--set", "train.lr=0.01",
                 "model.hidden_size=12", "--set", "train.max_steps=3"]) == 0
    assert main(["config", "--check", str(tmp_path / "config.yaml"), "--set", "train.lr=0.01",
                 "model.hiden_size=12"]) == 2
    assert "did you mean 'hidden_size'" in capsys.readouterr().err
    assert main(["-q", "train", str(tmp_path / "config.yaml"), "--set", "train.max_steps=2",
                 "model.hidden_size=12", "train.valid_every=2"]) == 0
    from rnnseq.config import Config

    saved = Config.load(tmp_path / "model" / "best" / "config.yaml")
    assert saved.model.hidden_size == 12
