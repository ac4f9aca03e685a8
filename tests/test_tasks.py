"""Multi-task training (data.tasks): config, the task sampler, tags, validation, resume."""

import json

import pytest

from rnnseq.cli import main
from rnnseq.config import Config, ConfigError, model_settings, task_tags
from rnnseq.data.tasks import TaskSampler
from rnnseq.errors import UsageError
from rnnseq.inference.translator import load

from .test_cli import CONFIG as CLI_CONFIG
from .test_cli import PAIRS

# main task: spell a word out; auxiliary: reverse it
REVERSED = [(s, " ".join(reversed(t.split()))) for s, t in PAIRS]

TASKS = """\
  tasks:
    - name: spell
      train_tsv: {d}/spell.tsv
      valid_tsv: {d}/spell-valid.tsv
      tag: <spell>
    - name: reverse
      train_tsv: {d}/reverse.tsv
      valid_tsv: {d}/reverse-valid.tsv
      weight: 0.5
      tag: <rev>
"""
# test_cli's config, with the tasks in place of its files and 30 steps
CONFIG = CLI_CONFIG.replace("  train_tsv: {d}/train.tsv\n  valid_tsv: {d}/valid.tsv\n", TASKS) \
    .replace("max_steps: 40", "max_steps: 30").replace("valid_every: 20", "valid_every: 10")
assert "tasks:" in CONFIG and "valid_every: 10" in CONFIG


@pytest.fixture
def taskdir(tmp_path):
    for name, pairs in (("spell", PAIRS * 3), ("reverse", REVERSED * 3)):
        (tmp_path / f"{name}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
        (tmp_path / f"{name}-valid.tsv").write_text(
            "".join(f"{s}\t{t}\n" for s, t in pairs[:3]))
    (tmp_path / "config.yaml").write_text(CONFIG.format(d=tmp_path))
    return tmp_path


def test_tasks_parse_and_name_the_line_of_a_mistake(taskdir):
    config = Config.load(taskdir / "config.yaml")
    assert [t.name for t in config.data.tasks] == ["spell", "reverse"]
    assert config.data.tasks[1].weight == 0.5
    assert task_tags(config.data) == {"spell": "<spell>", "reverse": "<rev>"}
    text = (taskdir / "config.yaml").read_text()
    (taskdir / "bad.yaml").write_text(text.replace("weight: 0.5", "wieght: 0.5"))
    with pytest.raises(ConfigError, match=r"bad.yaml:10: unknown key 'data.tasks\[1\].wieght' "
                                          r"\(did you mean 'weight'\?\)"):
        Config.load(taskdir / "bad.yaml")
    for old, new, message in [
        ("weight: 0.5", "weight: 0", "data.tasks[1].weight"),
        ("name: reverse", "name: spell", "two tasks are named 'spell'"),
        ("tag: <rev>", "tag: <spell>", "two tasks share a tag"),
        ("tag: <rev>", "tag: '<r v>'", "a tag is one token without spaces"),
        ("  tasks:", "  train_tsv: x.tsv\n  tasks:", "data.train_tsv belongs to no task"),
        ("  tasks:", "  main_task: nope\n  tasks:", "data.main_task 'nope' is not a task"),
        (f"      train_tsv: {taskdir}/reverse.tsv\n", "", "(reverse): no training data"),
    ]:
        (taskdir / "bad.yaml").write_text(text.replace(old, new))
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")
                           .replace(")", r"\)")):
            Config.load(taskdir / "bad.yaml")


def test_only_names_and_tags_define_the_model(taskdir):
    config = Config.load(taskdir / "config.yaml")
    assert model_settings(config)["data.tasks"] == [{"name": "spell", "tag": "<spell>"},
                                                    {"name": "reverse", "tag": "<rev>"}]
    other = Config.load(taskdir / "config.yaml", ["data.main_task=spell"])
    other.data.tasks[1].weight = 3.0
    other.data.tasks[1].train_tsv = "elsewhere.tsv"
    assert model_settings(other)["data.tasks"] == model_settings(config)["data.tasks"]


def test_the_sampler_gives_each_task_its_weights_share():
    sampler = TaskSampler([range(0, 1000), range(1000, 1300), range(1300, 5300)],
                          [1.0, 0.5, 2.0], seed=3)
    assert sampler.per_epoch == [1000, 500, 2000]
    assert sampler.shares() == pytest.approx([1 / 3.5, 0.5 / 3.5, 2 / 3.5])
    counts = [0, 0, 0]
    seen_small = set()
    for e in range(4):
        epoch = sampler.epoch(e)
        assert epoch == sampler.epoch(e)  # a function of the epoch alone: exact resume
        for i in epoch:
            counts[0 if i < 1000 else 1 if i < 1300 else 2] += 1
            if 1000 <= i < 1300:
                seen_small.add(i)
    total = sum(counts)
    assert [c / total for c in counts] == pytest.approx(sampler.shares(), abs=1e-9)
    assert seen_small == set(range(1000, 1300))  # the small task is cycled through whole
    # within one epoch no example of a task repeats before the whole task has been used
    big = [i for i in sampler.epoch(0) if i >= 1300]
    assert len(big) == len(set(big)) == 2000


def test_a_multi_task_model_trains_validates_and_translates_each_task(taskdir, capsys):
    assert main(["-q", "train", str(taskdir / "config.yaml")]) == 0
    log = (taskdir / "model" / "train.log").read_text()
    assert "tasks: spell (24 pairs, 67% of each epoch), reverse (24 pairs, 33% of each epoch)" \
        in log
    assert "validation of task reverse: loss" in log
    model = taskdir / "model" / "best"
    vocab = json.loads((model / "src_vocab.json").read_text())
    assert "<spell>" in str(vocab) and "<rev>" in str(vocab)
    translator = load(str(model))
    assert translator.tasks == {"spell": "<spell>", "reverse": "<rev>"}
    words = ["abc", "cab", "bca"]
    main_task = translator.translate(words)
    assert main_task == translator.translate(words, task="spell")
    assert translator.translate(words, task="reverse") == translator.translate(
        [f"<rev> {w}" for w in words])  # the tag in the input picks the task
    [[hyp]] = translator.translate_nbest(["abc"], task="reverse", return_attention=True)
    assert hyp.source_tokens == ["<rev>", "a", "b", "c"]
    with pytest.raises(UsageError, match="unknown task 'nope'; this model's tasks are "
                                         "spell, reverse"):
        translator.translate(words, task="nope")
    (taskdir / "in.txt").write_text("\n".join(words) + "\n")
    capsys.readouterr()
    assert main(["translate", str(model), "-i", str(taskdir / "in.txt"), "--task",
                 "reverse"]) == 0
    assert capsys.readouterr().out.splitlines() == translator.translate(words, task="reverse")


def test_resume_with_tasks_is_exact_and_may_change_weights_not_tags(taskdir, capsys):
    from safetensors.torch import load_file

    config = str(taskdir / "config.yaml")
    assert main(["-q", "train", config, "--out", str(taskdir / "straight")]) == 0
    assert main(["-q", "train", config, "--out", str(taskdir / "split"),
                 "--set", "train.max_steps=10"]) == 0
    assert main(["-q", "train", config, "--out", str(taskdir / "split"), "--resume"]) == 0
    a = load_file(str(taskdir / "straight" / "last" / "model.safetensors"))
    b = load_file(str(taskdir / "split" / "last" / "model.safetensors"))
    assert all(a[k].equal(b[k]) for k in a)
    text = (taskdir / "config.yaml").read_text()
    (taskdir / "retag.yaml").write_text(text.replace("tag: <rev>", "tag: <back>"))
    assert main(["-q", "train", str(taskdir / "retag.yaml"), "--out", str(taskdir / "split"),
                 "--resume", "--set", "train.max_steps=40"]) == 2
    assert "data.tasks changed" in capsys.readouterr().err
    (taskdir / "reweight.yaml").write_text(text.replace("weight: 0.5", "weight: 2.0"))
    assert main(["-q", "train", str(taskdir / "reweight.yaml"), "--out",
                 str(taskdir / "split"), "--resume", "--set", "train.max_steps=40"]) == 0
