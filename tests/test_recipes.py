"""Every recipe runs end to end (prepare, train, translate, evaluate) for two steps on a sample
of its data: `make recipes-check`, so that the recipes never rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "run.py"
MULTI30K = ROOT / ".." / "shared" / "data" / "multi30k"

sys.path.insert(0, str(ROOT / "recipes"))
import run as recipes  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_recipe_runs_for_two_steps(name, tmp_path):
    if recipes.RECIPES[name].needs_multi30k and not (MULTI30K / "train.de").exists():
        pytest.skip(f"{MULTI30K} is not there (the Multi30k recipes read it)")
    proc = subprocess.run([sys.executable, str(RUN), name, "--check", "--keep", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "recipes check passed" in proc.stdout
    result = json.loads((tmp_path / name / "model" / "result.json").read_text())
    assert result["steps"] == 2 and result["parameters"] > 0
    metrics = {line.split(" = ")[0] for line in result["scores"]}
    expected = {"multi30k-word-lstm": {"BLEU", "CHRF"}, "cmudict-g2p": {"SER", "WER"},
                "cmudict-g2p-stress": {"SER", "WER"}}.get(name, {"BLEU", "CHRF"})
    assert metrics == expected
    if recipes.RECIPES[name].average:  # averaged, then chosen on dev
        assert result["tested"] in ("best", "averaged")
        assert set(result["dev_scores"]) == {"best", "averaged"}
        assert (tmp_path / name / "model" / "averaged" / "model.safetensors").exists()
    # nothing of a check lands in the repository's runs/ folder
    assert not any(arg.startswith("runs/") or "=runs/" in arg for arg in proc.stdout.split())


def test_recipe_train_log_is_parsed(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "x INFO model: lstm bidirectional, attention luong_general, 13,690,434 parameters\n"
        "x INFO training stopped at step 5000: reached train.max_steps (5000)\n"
        "x INFO best checkpoint: runs/m/best (step 4500, bleu 39.1234)\n", encoding="utf-8")
    assert recipes.parse_train_log(log) == {
        "parameters": 13690434, "steps": 5000, "stop_reason": "reached train.max_steps (5000)",
        "best_step": 4500, "valid_metric": "bleu", "valid_value": 39.1234}


def test_first_score_reads_the_evaluate_output():
    assert recipes.first_score("SER = 32.59 (2062/6327 wrong)\nWER = 7.77 (...)\n") == (
        "SER", 32.59)
    assert recipes.first_score("BLEU = 41.87 73.1/50.2 nrefs:1|case:mixed\n") == ("BLEU", 41.87)


def test_unknown_recipe_is_refused():
    proc = subprocess.run([sys.executable, str(RUN), "no-such-recipe"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_resume_applies_to_full_runs_only():
    proc = subprocess.run([sys.executable, str(RUN), "cmudict-g2p", "--check", "--resume"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--resume applies to full runs" in proc.stderr
