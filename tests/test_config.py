import pytest

from rnnseq.config import Config, ConfigError, apply_overrides, describe


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid():
    config = Config.from_dict({})
    assert config.model.cell == "lstm"
    assert config.input_feeding is True  # Luong attention: on by default


def test_unknown_key_names_key_line_and_suggestion(tmp_path):
    path = write(tmp_path, "model:\n  cell: gru\n  hiden_size: 10\n")
    with pytest.raises(ConfigError) as err:
        Config.load(path)
    msg = str(err.value)
    assert f"{path}:3" in msg and "model.hiden_size" in msg and "hidden_size" in msg


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'modle'.*did you mean 'model'"):
        Config.load(write(tmp_path, "modle:\n  cell: gru\n"))


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("model:\n  cell: transformer\n", r"model\.cell: expected one of rnn, lstm, gru"),
        ("model:\n  attention: luong\n", r"model\.attention: expected one of none, bahdanau"),
        ("model:\n  layers: two\n", r"model\.layers: expected an integer, got 'two'"),
        ("model:\n  layers: -1\n", r"model\.layers must be >= 1, got -1"),
        ("model:\n  hidden_size: 0\n", r"model\.hidden_size must be >= 1"),
        ("train:\n  lr: 0\n", r"train\.lr must be > 0"),
        ("train:\n  lr: fast\n", r"train\.lr: expected a number"),
        ("model:\n  bidirectional: 3\n", r"model\.bidirectional: expected true/false"),
        ("model: 5\n", r"section 'model' must be a mapping"),
        ("format_version: 99\n", r"format_version 99 is newer"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Config.load(write(tmp_path, text))


@pytest.mark.parametrize(
    "raw, pattern",
    [
        ({"model": {"attention": "bahdanau", "input_feeding": True}}, "input_feeding"),
        ({"model": {"tie_embeddings": True, "embedding_size": 10, "hidden_size": 20}},
         "tie_embeddings"),
        ({"model": {"share_embeddings": True}}, "shared_vocab"),
        ({"model": {"hidden_size": 7}}, "even"),
        ({"data": {"shared_vocab": True, "src_tokenizer": "char"}}, "same data.src_tokenizer"),
        ({"decode": {"beam_size": 2, "n_best": 3}}, "n_best"),
        ({"train": {"max_steps": None}}, "at least one of"),
    ],
)
def test_cross_field_checks(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Config.from_dict(raw)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        Config.load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        Config.load(write(tmp_path, "model: [unclosed\n"))


def test_overrides(tmp_path):
    path = write(tmp_path, "model:\n  cell: gru\n")
    config = Config.load(path, ["model.layers=3", "train.lr=0.01", "data.train_tsv=x.tsv"])
    assert (config.model.cell, config.model.layers, config.train.lr) == ("gru", 3, 0.01)
    assert config.data.train_tsv == "x.tsv"
    with pytest.raises(ConfigError, match="expected section.key=value"):
        apply_overrides({}, ["model.layers"])
    with pytest.raises(ConfigError, match="unknown key 'model.layer'"):
        Config.load(path, ["model.layer=3"])


def test_yaml_round_trip():
    config = Config.from_dict({"model": {"cell": "gru", "attention": "bahdanau"}})
    import yaml

    again = Config.from_dict(yaml.safe_load(config.to_yaml()))
    assert again == config


def test_describe_lists_every_key():
    text = describe()
    for key in ("cell:", "attention:", "label_smoothing:", "beam_size:", "train_tsv:"):
        assert key in text
