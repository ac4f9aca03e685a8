"""Scoring strings: sacreBLEU BLEU/chrF, and edit-distance rates SER, WER and CER.

Definitions (also in ``rnnseq evaluate --help`` and the README):

* ``bleu``, ``chrf``: corpus scores from sacreBLEU, reported with its signature.
* ``wer``: token edit distance / reference tokens, summed over the corpus (the ASR convention;
  on phoneme tokens this is the PER of grapheme-to-phoneme papers). With several references
  per line, the closest reference counts.
* ``cer``: the same over characters.
* ``ser``: sequence error rate, the share of hypotheses that match none of their references
  exactly (the "WER" of grapheme-to-phoneme papers).
* ``rouge``: ROUGE-1, ROUGE-2 and ROUGE-L F1 from Google's ``rouge-score`` (Lin 2004), the
  mean over lines of each line's F1, Porter stemming on unless ``stem=False``. With several
  references per line the SciTLDR rule applies (Cachola et al. 2020): the reference with the
  highest ROUGE-1 F1 is chosen for each line, and all three scores are that reference's — not
  an independent maximum per score. Its value (for checkpoint selection) is ROUGE-L;
  ``rouge1``, ``rouge2`` and ``rougeL`` are the single scores under the same rule.

Rates are percentages. References may hold several alternatives per line, separated by tabs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

METRIC_NAMES = ("bleu", "chrf", "ser", "wer", "cer", "rouge", "rouge1", "rouge2", "rougeL")
HIGHER_IS_BETTER = {"bleu": True, "chrf": True, "ser": False, "wer": False, "cer": False,
                    "rouge": True, "rouge1": True, "rouge2": True, "rougeL": True,
                    "loss": False}
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def is_better(metric: str, value: float, than: float | None) -> bool:
    """Whether ``value`` of ``metric`` (a name above, or ``loss``) beats ``than``; anything beats
    ``None``. The one rule for checkpoint selection, early stopping and recipes."""
    if than is None:
        return True
    try:
        higher = HIGHER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; expected one of "
                         f"{', '.join(HIGHER_IS_BETTER)}") from None
    return value > than if higher else value < than


@dataclass
class Score:
    name: str
    value: float
    signature: str = ""
    detail: str = ""
    parts: dict[str, float] | None = None  # several scores of one metric (ROUGE-1/2/L)

    def __str__(self) -> str:
        if self.parts:
            text = "  ".join(f"{_display(k)} = {v:.2f}" for k, v in self.parts.items())
        else:
            text = f"{_display(self.name)} = {self.value:.2f}"
        if self.detail:
            text += f" ({self.detail})"
        if self.signature:
            text += f"  [{self.signature}]"
        return text


def _display(name: str) -> str:
    """How a metric is printed: ``BLEU``, ``ROUGE-1``, ``ROUGE-L`` (see :func:`metric_name`)."""
    return f"ROUGE-{name[5:].upper()}" if name in ROUGE_TYPES else name.upper()


def metric_name(printed: str) -> str:
    """The metric a printed name stands for: ``ROUGE-L`` -> ``rougeL``, ``SER`` -> ``ser``."""
    for name in HIGHER_IS_BETTER:
        if _display(name) == printed:
            return name
    raise ValueError(f"unknown metric {printed!r}")


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


def rouge(hyps: Sequence[str], refs: Sequence[Sequence[str]], name: str = "rouge",
          stem: bool = True) -> Score:
    """ROUGE F1 ×100 (``name``: ``rouge`` for all three, or one of ``ROUGE_TYPES``); see the
    module docstring for the rule with several references."""
    from importlib.metadata import version

    from rouge_score import rouge_scorer

    _check(hyps, refs)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=stem)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    several = any(len(rs) > 1 for rs in refs)
    for hyp, rs in zip(hyps, refs, strict=True):
        # score(target, prediction); max() keeps the first reference on ties
        chosen = max((scorer.score(r, hyp) for r in rs), key=lambda s: s["rouge1"].fmeasure)
        for key in ROUGE_TYPES:
            totals[key] += chosen[key].fmeasure
    parts = {key: 100.0 * total / len(hyps) for key, total in totals.items()}
    signature = (f"rouge-score {version('rouge-score')}|F1|stem:{'yes' if stem else 'no'}"
                 f"|refs:{'best-rouge1' if several else 'single'}|lines:{len(hyps)}")
    detail = ("several references per line: each line scored against the reference with "
              "the highest ROUGE-1 F1" if several else "")
    if name == "rouge":
        return Score("rouge", parts["rougeL"], signature, detail, parts)
    return Score(name, parts[name], signature, detail)


def score(name: str, hyps: Sequence[str], refs: Sequence[Sequence[str]], **kwargs) -> Score:
    """Score ``hyps`` against ``refs`` (each a list of alternatives) with metric ``name``."""
    if name == "rouge" or name in ROUGE_TYPES:
        return rouge(hyps, refs, name, **kwargs)
    if name in ("bleu", "chrf"):
        return _sacrebleu(name, hyps, refs, **kwargs)
    if name == "ser":
        return sequence_error_rate(hyps, refs)
    if name == "wer":
        return word_error_rate(hyps, refs)
    if name == "cer":
        return char_error_rate(hyps, refs)
    raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRIC_NAMES)}")
