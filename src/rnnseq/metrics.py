"""Scoring strings: sacreBLEU BLEU/chrF, and edit-distance rates SER, WER and CER.

Definitions (also in ``rnnseq evaluate --help`` and the README):

* ``bleu``, ``chrf``: corpus scores from sacreBLEU, reported with its signature.
* ``wer``: token edit distance / reference tokens, summed over the corpus (the ASR convention;
  on phoneme tokens this is the PER of grapheme-to-phoneme papers). With several references
  per line, the closest reference counts.
* ``cer``: the same over characters.
* ``ser``: sequence error rate, the share of hypotheses that match none of their references
  exactly (the "WER" of grapheme-to-phoneme papers).

Rates are percentages. References may hold several alternatives per line, separated by tabs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

METRIC_NAMES = ("bleu", "chrf", "ser", "wer", "cer")
HIGHER_IS_BETTER = {"bleu": True, "chrf": True, "ser": False, "wer": False, "cer": False,
                    "loss": False}


@dataclass
class Score:
    name: str
    value: float
    signature: str = ""
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.name.upper()} = {self.value:.2f}"
        if self.detail:
            text += f" ({self.detail})"
        if self.signature:
            text += f"  [{self.signature}]"
        return text


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (unit costs)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _check(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("nothing to score: no hypotheses")


def sequence_error_rate(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> Score:
    _check(hyps, refs)
    # Compared token by token, so runs of whitespace do not count as errors.
    wrong = sum(all(h.split() != r.split() for r in rs) for h, rs in zip(hyps, refs, strict=True))
    return Score("ser", 100.0 * wrong / len(hyps), detail=f"{wrong}/{len(hyps)} wrong")


def _error_rate(name, hyps, refs, split) -> Score:
    _check(hyps, refs)
    errors = total = 0
    for h, rs in zip(hyps, refs, strict=True):
        hs = split(h)
        best = min(((edit_distance(hs, split(r)), len(split(r))) for r in rs),
                   key=lambda e: (e[0] / max(e[1], 1), e[0]))
        errors += best[0]
        total += best[1]
    return Score(name, 100.0 * errors / max(total, 1), detail=f"{errors}/{total} edits")


def word_error_rate(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> Score:
    return _error_rate("wer", hyps, refs, str.split)


def char_error_rate(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> Score:
    return _error_rate("cer", hyps, refs, list)


def _sacrebleu(name: str, hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs) -> Score:
    import sacrebleu

    _check(hyps, refs)
    width = max(len(r) for r in refs)
    # sacreBLEU takes reference streams; lines with fewer alternatives repeat their first.
    streams = [[r[i] if i < len(r) else r[0] for r in refs] for i in range(width)]
    if name == "bleu" and kwargs.get("tokenize") == "none":
        kwargs.setdefault("force", True)  # pre-tokenized text by request: no "detokenize" nag
    metric = sacrebleu.BLEU(**kwargs) if name == "bleu" else sacrebleu.CHRF(**kwargs)
    result = metric.corpus_score(list(hyps), streams)
    detail = str(result).split("=", 1)[1].strip() if name == "bleu" else ""
    detail = detail.split(" ", 1)[1] if detail else ""
    return Score(name, result.score, str(metric.get_signature()), detail)


def score(name: str, hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs) -> Score:
    """Score ``hyps`` against ``refs`` (each a list of alternatives) with metric ``name``."""
    if name in ("bleu", "chrf"):
        return _sacrebleu(name, hyps, refs, **kwargs)
    if name == "ser":
        return sequence_error_rate(hyps, refs)
    if name == "wer":
        return word_error_rate(hyps, refs)
    if name == "cer":
        return char_error_rate(hyps, refs)
    raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRIC_NAMES)}")
