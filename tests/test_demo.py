"""The demo runs end to end (a quick version) and reports what the README promises."""

import pytest

from rnnseq.cli import main
from rnnseq.data.builtin import cmudict_splits, read_cmudict, split_of


def test_cmudict_split_is_deterministic_and_by_word():
    entries = read_cmudict()
    assert len(entries) > 100_000
    assert entries["python"] == ["P AY1 TH AA0 N"]
    assert len(entries["read"]) >= 2  # variants join their word
    splits = cmudict_splits()
    words = [set(s) for s in splits.values()]
    assert not (words[0] & words[1]) and not (words[0] & words[2]) and not (words[1] & words[2])
    assert sum(len(s) for s in words) == len(entries)
    assert 0.04 < len(splits["test"]) / len(entries) < 0.06
    assert all(split_of(w) == "test" for w in list(splits["test"])[:50])
    no_stress = read_cmudict(stress=False)
    assert no_stress["python"] == ["P AY TH AA N"]


@pytest.mark.slow
def test_quick_demo(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SER" in out and "PER" in out and "PYTHON" in out
    assert f"translate {tmp_path}/model/best" in out
    assert (tmp_path / "model" / "best" / "model.safetensors").exists()
    # a second run keeps the first model
    assert main(["demo", "--quick", "--out", str(tmp_path), "--steps", "2"]) == 0
    assert (tmp_path / "model-2" / "best").exists() and (tmp_path / "model" / "best").exists()
