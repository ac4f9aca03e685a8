"""Every recipe runs end to end (prepare, train, translate, evaluate) for two steps on a sample
of its data: `make recipes-check`, so that the recipes never rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "run.py"

sys.path.insert(0, str(ROOT / "recipes"))
import run as recipes  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_recipe_runs_for_two_steps(name, tmp_path):
    needs = recipes.RECIPES[name].needs
    if needs and not (recipes.ROOT / needs).exists():
        pytest.skip(f"{needs} is not there (the recipe reads it)")
    proc = subprocess.run([sys.executable, str(RUN), name, "--check", "--keep", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "recipes check passed" in proc.stdout
    result = json.loads((tmp_path / name / "model" / "result.json").read_text())
    assert result["steps"] == (5 if recipes.RECIPES[name].then else 2)
    assert result["parameters"] > 0
    metrics = {part.split(" = ")[0] for line in result["scores"] for part in line.split("  ")
               if " = " in part}
    asked = {option for options in recipes.RECIPES[name].evaluate for option in options}
    expected = ({"SER", "WER"} if "ser" in asked else
                {"ROUGE-1", "ROUGE-2", "ROUGE-L"} if "rouge" in asked else {"BLEU", "CHRF"})
    assert metrics == expected
    for label, scores in result.get("baselines", {}).items():
        assert scores and scores[0].startswith("ROUGE-1 = "), label
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
        "ser", 32.59)
    assert recipes.first_score("BLEU = 41.87 73.1/50.2 nrefs:1|case:mixed\n") == ("bleu", 41.87)
    assert recipes.first_score("ROUGE-1 = 31.40  ROUGE-2 = 11.40  ROUGE-L = 24.00  [...]\n") \
        == ("rouge1", 31.4)


def test_unknown_recipe_is_refused():
    proc = subprocess.run([sys.executable, str(RUN), "no-such-recipe"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_resume_applies_to_full_runs_only():
    proc = subprocess.run([sys.executable, str(RUN), "cmudict-g2p", "--check", "--resume"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--resume applies to full runs" in proc.stderr


PREPARE_SMALL = ROOT / "recipes" / "g2p-small" / "prepare.py"


def own_lexicon(path: Path, words: int = 400) -> Path:
    """A made-up lexicon in another script: accented Latin words, some with two
    pronunciations (one line each)."""
    import random

    rng = random.Random(3)
    lines = []
    for i in range(words):
        word = "".join(rng.choice(["a", "e", "é", "è", "ñ", "o", "ö", "s", "t", "ç"])
                       for _ in range(rng.randint(3, 7))) + str(i)
        pron = " ".join(rng.choice(["a", "e", "ɛ", "ɲ", "o", "ø", "s", "t"]) for _ in word)
        lines.append(f"{word}\t{pron}")
        if i % 10 == 0:
            lines.append(f"{word}\t{pron} ə")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare_small(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PREPARE_SMALL), *args], capture_output=True,
                          text=True, cwd=ROOT)


def read_words(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_g2p_small_prepares_your_own_lexicon(tmp_path):
    lexicon = own_lexicon(tmp_path / "mine.tsv")
    out = tmp_path / "data"
    proc = prepare_small(str(out), "--tsv", str(lexicon), "--train-words", "100", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "sample.json").read_text())
    assert info["train_words"] == 100 and info["seed"] == 7
    train_words = {line.split("\t")[0] for line in read_words(out / "train.tsv")}
    test_words = read_words(out / "test.words")
    assert len(train_words) == 100 and not train_words & set(test_words)
    # every pronunciation of a word stays with it: a word with two has both, tab-separated
    entries = {}
    for line in read_words(lexicon):
        word, pron = line.split("\t")
        entries.setdefault(word, []).append(pron)
    for word, prons in zip(test_words, read_words(out / "test.prons"), strict=True):
        assert prons.split("\t") == entries[word]
    assert sum(len(entries[w]) for w in train_words) == len(read_words(out / "train.tsv"))
    # the same seed draws the same words; another seed others
    again = prepare_small(str(tmp_path / "again"), "--tsv", str(lexicon), "--train-words",
                          "100", "--seed", "7")
    other = prepare_small(str(tmp_path / "other"), "--tsv", str(lexicon), "--train-words",
                          "100", "--seed", "8")
    assert again.returncode == other.returncode == 0
    same = (tmp_path / "again" / "train.tsv").read_text(encoding="utf-8")
    assert same == (out / "train.tsv").read_text(encoding="utf-8")
    assert (tmp_path / "other" / "train.tsv").read_text(encoding="utf-8") != same


def test_g2p_small_prepare_names_the_bad_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("abc\ta b c\nno tab here\n", encoding="utf-8")
    proc = prepare_small(str(tmp_path / "out"), "--tsv", str(bad))
    assert proc.returncode != 0
    assert f"{bad}:2: expected word<TAB>pronunciation" in proc.stderr
    assert not (tmp_path / "out").exists()
    proc = prepare_small(str(tmp_path / "out"), "--tsv", str(bad), "--no-stress")
    assert proc.returncode == 2 and "--no-stress applies to CMUdict" in proc.stderr
    proc = prepare_small(str(tmp_path / "out"), "--train-words", "0")
    assert proc.returncode == 2 and "--train-words must be at least 1" in proc.stderr


@pytest.mark.slow
def test_g2p_small_config_trains_on_your_own_lexicon(tmp_path):
    """The recipe's config takes another language's lexicon with no change but the paths."""
    from rnnseq.config import Config
    from rnnseq.inference.translator import load
    from rnnseq.training.trainer import train

    data = tmp_path / "data"
    assert prepare_small(str(data), "--tsv", str(own_lexicon(tmp_path / "mine.tsv"))
                         ).returncode == 0
    config = Config.load(ROOT / "recipes" / "g2p-small" / "config.yaml", [
        f"data.train_tsv={data}/train.tsv", f"data.valid_tsv={data}/dev.tsv",
        f"train.out_dir={tmp_path}/model", "train.max_steps=2", "train.valid_every=2",
        "train.progress=false"])
    train(config)
    translator = load(str(tmp_path / "model" / "best"))
    vocab = set(translator.bundle.src_vocab.itos)
    assert "\u0301" in vocab and "é" not in vocab  # the source is decomposed (NFD)
    assert len(translator.translate(read_words(data / "test.words")[:5], beam_size=2)) == 5


def test_a_resumed_recipe_skips_a_first_phase_it_has_finished(tmp_path):
    recipe = recipes.RECIPES["scitldr"]
    assert recipe.then.get("model.coverage") == "true"
    for coverage, second in ((False, False), (True, True)):
        (tmp_path / "config.yaml").write_text(f"model:\n  coverage: {str(coverage).lower()}\n")
        assert recipes.in_second_phase(recipe, tmp_path) is second
    assert not recipes.in_second_phase(recipes.RECIPES["g2p-small"], tmp_path)
