"""Command line: ``rnnseq train | translate | evaluate | serve | average | export | demo |
config``.

Each sub-command parses its arguments and calls one library function. Heavy modules (torch)
are imported inside the commands, so ``rnnseq --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EVALUATE_HELP = """\
metrics (several may be given; rates are percentages):
  bleu  corpus BLEU from sacreBLEU, printed with its signature
  chrf  corpus chrF from sacreBLEU, printed with its signature
  wer   token edit distance / reference tokens, summed over the corpus (the ASR
        convention; on phoneme tokens this is the PER of G2P papers). With several
        references per line, the closest one counts.
  cer   the same over characters
  ser   sequence error rate: the share of hypotheses that match none of their
        references exactly, token by token (the "WER" of G2P papers)
  rouge ROUGE-1, ROUGE-2 and ROUGE-L F1 from Google's rouge-score, the mean over
        lines, Porter stemming on (--no-stem: off). With several references per
        line, each line is scored against the reference with the highest ROUGE-1
        F1 (the SciTLDR rule), and all three scores are that reference's.
        rouge1 / rouge2 / rougeL: one of them under the same rule

A reference line may hold several alternatives separated by tabs (used by all metrics;
for bleu/chrf they become extra reference streams).
"""


class _TqdmHandler(logging.Handler):
    """Log lines that do not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            try:
                from tqdm import tqdm
            except ImportError:  # a torch-free runtime install has no progress bars
                print(self.format(record), file=sys.stderr)
                return
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(quiet: bool = False) -> None:
    logger = logging.getLogger("rnnseq")
    logger.setLevel(logging.INFO)  # train.log gets everything; the terminal may get less
    handler = next((h for h in logger.handlers if isinstance(h, _TqdmHandler)), None)
    if handler is None:
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


# -- train --------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .config import Config
    from .training.trainer import train

    overrides = list(args.set or [])
    if args.out:
        overrides.append(f"train.out_dir={args.out}")
    config = Config.load(args.config, overrides)
    result = train(config, resume=args.resume)
    best = result.best_dir.resolve() if result.best_dir.exists() else result.last_dir.resolve()
    print(f"model saved in {result.out_dir}/best (-> {best})")
    print(f"translate with: rnnseq translate {result.out_dir}/best -i INPUT -o OUTPUT")
    return 0


# -- translate ----------------------------------------------------------------------------------
def _format(translations, scores: bool) -> list[str]:
    lines = []
    for hyp in translations:
        lines.append(f"{hyp.text}\t{hyp.score:.4f}" if scores else hyp.text)
    return lines


def cmd_translate(args: argparse.Namespace) -> int:
    import contextlib
    import json

    from .data.corpus import read_lines
    from .fileio import atomic_open
    from .inference.translator import load

    translator = load(args.models if len(args.models) > 1 else args.models[0],
                      device=args.device, precision=args.precision, quantize=args.quantize,
                      mixture=args.ensemble_mixture)
    aligned = _aligned_files(args)
    kwargs = dict(beam_size=args.beam, n_best=args.n_best, length_penalty=args.length_penalty,
                  batch_size=args.batch_size,
                  return_attention=bool(args.attention or args.plot_attention),
                  min_length=args.min_length, block_ngram_repeat=args.block_ngram_repeat,
                  block_ngram_ignore=args.block_ngram_ignore,
                  coverage_penalty=args.coverage_penalty, sampling=_sampling(args),
                  task=args.task, workers=args.workers)

    def run(lines: list[str], first: int) -> list[list[str]]:
        """Output lines for input lines ``first, first + 1, ...`` (and their translations)."""
        numbers = list(range(first, first + len(lines)))
        if args.score_only:
            targets = [aligned.line(args.score_only, n) for n in numbers]
            scores = translator.score(lines, targets, batch_size=args.batch_size,
                                      task=args.task)
            return [[f"{value:.4f}"] for value in scores], None
        prefixes = None if args.prefix is None else [aligned.line(args.prefix, n)
                                                     for n in numbers]
        results = translator.translate_nbest(lines, prefixes=prefixes, line_numbers=numbers,
                                             **kwargs)
        return [_format(result, args.scores) for result in results], results

    if args.input is None:  # stream: lines as they arrive, answers flushed at once
        from .streaming import line_batches

        with contextlib.ExitStack() as stack:
            # Files named with -o/--attention appear only once the input has ended: a crash
            # or an interrupt never leaves a truncated file that looks complete.
            out = stack.enter_context(atomic_open(args.output)) if args.output else sys.stdout
            attn_out = stack.enter_context(atomic_open(args.attention)) if args.attention else None
            batch_size = args.batch_size or translator.config.decode.batch_size
            count = 0
            for lines in line_batches(sys.stdin, batch_size):
                outputs, results = run(lines, count)
                for i, line in enumerate(lines):
                    out.write("\n".join(outputs[i]) + "\n")
                    count += 1
                    if attn_out:
                        attn_out.write(json.dumps(_attention_record(line, results[i][0])) + "\n")
                    if results is not None:
                        _plot(args.plot_attention, count, results[i][0])
                out.flush()
        aligned.check_used(count)
        return 0

    sentences = read_lines(args.input)  # the model's tokenizer normalizes them
    aligned.check_used(len(sentences))
    outputs, results = run(sentences, 0)
    text = "".join(line + "\n" for lines in outputs for line in lines)
    if args.output:
        with atomic_open(args.output) as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    if args.attention:
        with atomic_open(args.attention) as handle:
            for sentence, result in zip(sentences, results, strict=True):
                handle.write(json.dumps(_attention_record(sentence, result[0])) + "\n")
    for number, result in enumerate(results or [], 1):
        _plot(args.plot_attention, number, result[0])
    return 0


class _Aligned:
    """Files with one line per input line (``--prefix``, ``--score-only``), read whole."""

    def __init__(self, paths: dict[str, str]) -> None:
        from .data.corpus import read_lines

        self.lines = {path: read_lines(path) for path in paths.values()}
        self.options = {path: option for option, path in paths.items()}

    def line(self, path: str, number: int) -> str:
        from .errors import UsageError

        lines = self.lines[path]
        if number >= len(lines):
            raise UsageError(f"{self.options[path]} {path} has {len(lines)} lines; the input "
                             f"has more (line {number + 1})")
        return lines[number]

    def check_used(self, count: int) -> None:
        from .errors import UsageError

        for path, lines in self.lines.items():
            if len(lines) != count:
                raise UsageError(f"{self.options[path]} {path} has {len(lines)} lines; the "
                                 f"input has {count}: give one per input line")


def _aligned_files(args: argparse.Namespace) -> _Aligned:
    from .errors import UsageError

    if args.score_only:
        clash = [name for name, given in (
            ("--prefix", args.prefix), ("--sample", args.sample), ("--attention", args.attention),
            ("--plot-attention", args.plot_attention), ("--n-best", args.n_best != 1),
            ("--scores", args.scores)) if given]
        if clash:
            raise UsageError(f"--score-only scores given targets; it does not decode, so "
                             f"{', '.join(clash)} cannot go with it")
    paths = {"--prefix": args.prefix, "--score-only": args.score_only}
    return _Aligned({option: path for option, path in paths.items() if path})


def _sampling(args: argparse.Namespace):
    from .errors import UsageError
    from .inference.sampling import Sampling

    given = [name for name, value in (("--top-k", args.top_k), ("--top-p", args.top_p),
                                      ("--temperature", args.temperature),
                                      ("--seed", args.seed)) if value is not None]
    if not args.sample:
        if given:
            raise UsageError(f"{', '.join(given)} set how --sample samples; add --sample")
        return None
    if args.beam not in (None, 1):
        raise UsageError(f"--sample draws one token at a time; drop --beam {args.beam}")
    return Sampling.given(top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                          seed=args.seed)


def _plot(directory: str | None, number: int, hyp) -> None:
    """Write input line ``number``'s attention heat map to DIRECTORY/NNNNNN.png."""
    if directory is None:
        return
    from .errors import UsageError
    from .plot import plot_attention

    if hyp.attention is None:
        raise UsageError("--plot-attention: this model has no attention (attention: none)")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    plot_attention(hyp.source_tokens, hyp.tokens, hyp.attention, folder / f"{number:06d}.png")


def _attention_record(source: str, hyp) -> dict:
    return {"source": source, "source_tokens": hyp.source_tokens, "target": hyp.text,
            "target_tokens": hyp.tokens, "attention": hyp.attention}


# -- evaluate -----------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data.corpus import DataError, read_lines
    from .metrics import score

    hyps = read_lines(args.hyp)
    ref_files = [read_lines(path) for path in args.ref]
    for path, lines in zip(args.ref, ref_files, strict=True):
        if len(lines) != len(hyps):
            raise DataError(
                f"line counts differ: {args.hyp} has {len(hyps)} lines, {path} has {len(lines)}"
            )
    refs = [[alt for f in ref_files for alt in f[i].split("\t")] for i in range(len(hyps))]
    if args.lowercase:
        hyps = [h.lower() for h in hyps]
        refs = [[r.lower() for r in rs] for rs in refs]
    for name in args.metric:
        kwargs = {}
        if name == "bleu" and args.bleu_tokenize:
            kwargs["tokenize"] = args.bleu_tokenize
        if name in ("bleu", "chrf") and args.lowercase:
            kwargs["lowercase"] = True
        if name.startswith("rouge"):
            kwargs["stem"] = not args.no_stem
        print(score(name, hyps, refs, **kwargs))
    return 0


# -- serve --------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from .errors import UsageError

    try:
        import uvicorn

        from .serve.app import Limits, create_app
        from .serve.batcher import torch_thread
    except ImportError as err:
        raise UsageError(f"rnnseq serve needs the [serve] extra ({err.name} is missing): "
                         "pip install 'rnnseq[serve]'") from None
    from .inference.translator import load

    translators = {}
    for spec in args.models:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        name = name or Path(path).resolve().name
        if name in translators:
            raise UsageError(f"two models are named {name!r}; name them: NAME=DIR")
        translators[name] = torch_thread().submit(  # see torch_thread: not on this thread
            load, path, device=args.device, precision=args.precision,
            quantize=args.quantize).result()
    limits = Limits(args.max_lines, args.max_chars, args.max_wait_ms, args.max_batch_tokens,
                    args.max_queue)
    uvicorn.run(create_app(translators, limits), host=args.host, port=args.port,
                log_level="warning" if args.quiet else "info",
                access_log=False)  # the app logs each request itself, with its batch
    return 0


# -- average ------------------------------------------------------------------------------------
def cmd_average(args: argparse.Namespace) -> int:
    from .average import average_model_dirs, resolve_inputs

    dirs = resolve_inputs(args.inputs, args.last)
    out = average_model_dirs(dirs, args.output)
    print(f"averaged {len(dirs)} checkpoints ({', '.join(d.name for d in dirs)}) into {out}")
    return 0


# -- export -------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from .export.onnx import export_model

    out = export_model(args.model, args.output, args.quantize)
    print(f"exported {args.model} to {out}")
    print(f"translate with: rnnseq translate {out} -i INPUT -o OUTPUT   (onnxruntime, no torch)")
    return 0


# -- demo / config ------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), steps=args.steps, quick=args.quick)


def cmd_config(args: argparse.Namespace) -> int:
    from .config import Config, describe

    if args.check:
        Config.load(args.check, args.set or [])
        print(f"{args.check}: OK")
    else:
        print(describe())
    return 0


# -- parser -------------------------------------------------------------------------------------
def _add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="extend", nargs="+", metavar="SECTION.KEY=VALUE",
                   help="override config values: --set train.lr=0.0005 train.max_steps=900 "
                        "(the flag may also be repeated)")


def _add_loading_options(p: argparse.ArgumentParser) -> None:
    """How a model is loaded for decoding (``translate`` and ``serve``)."""
    from .config import PRECISIONS, QUANTIZATIONS

    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16 autocast runs faster on CPUs with bf16 support; fp16 is GPU only")
    p.add_argument("--quantize", choices=QUANTIZATIONS,
                   help="int8: dynamic int8 weights for the RNNs and linear layers (CPU, fp32 "
                        "activations); the model directory is left as it is")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import MIXTURES
    from .metrics import METRIC_NAMES  # light: the scorers import their packages when used

    parser = argparse.ArgumentParser(
        prog="rnnseq", description="Recurrent sequence-to-sequence models: train, translate, "
        "evaluate.")
    parser.add_argument("--version", action="version", version=f"rnnseq {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config file (see `rnnseq config` for every key)")
    _add_set_option(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last")
    p.add_argument("--out", help="output directory (same as --set train.out_dir=...)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate text with a trained model (several: an "
                       "ensemble)")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model directory (e.g. OUT_DIR/best); several decode as an ensemble")
    p.add_argument("-i", "--input", help="input file; without it, stream stdin line by line")
    p.add_argument("-o", "--output", help="output file (written whole, atomically); "
                   "default stdout")
    p.add_argument("--beam", type=int, help="beam size (1 = greedy); default from the model's "
                   "config")
    p.add_argument("--n-best", type=int, default=1, help="output N hypotheses (or N samples) "
                   "per input, N consecutive lines, best first")
    p.add_argument("--length-penalty", type=float, help="GNMT alpha (0 = none)")
    p.add_argument("--min-length", type=int, help="no end of output before N tokens")
    p.add_argument("--block-ngram-repeat", type=int, metavar="N",
                   help="no output repeats an N-gram (0 = off)")
    p.add_argument("--block-ngram-ignore", nargs="+", metavar="TOKEN",
                   help="n-grams holding these target tokens are never blocked")
    p.add_argument("--coverage-penalty", type=float, metavar="BETA",
                   help="GNMT coverage penalty beta (0 = none)")
    p.add_argument("--prefix", metavar="FILE",
                   help="one target prefix per input line (may be empty): each output starts "
                        "with it and decoding continues from there")
    p.add_argument("--score-only", metavar="FILE",
                   help="print the log-probability of each line of FILE as the translation "
                        "of its input line (teacher forcing, with </s>), instead of decoding")
    p.add_argument("--sample", action="store_true",
                   help="draw outputs at random from the model instead of searching")
    p.add_argument("--top-k", type=int, help="sample among the K most probable tokens (0 = all)")
    p.add_argument("--top-p", type=float, help="sample among the most probable tokens whose "
                   "probability reaches P (nucleus; 1 = all)")
    p.add_argument("--temperature", type=float, help="divide log-probabilities by T before "
                   "sampling (default 1; 0 = greedy)")
    p.add_argument("--seed", type=int, help="sampling seed (default 0); each input line has "
                   "its own random stream, so batching never changes a line's samples")
    p.add_argument("--task", metavar="NAME",
                   help="a multi-task model: the task to do (default its main task; a line "
                        "that starts with a task's tag does that task)")
    p.add_argument("--ensemble-mixture", default="probability", choices=MIXTURES,
                   help="how an ensemble combines its models' next-token distributions: mean "
                        "of probabilities, or normalised mean of log-probabilities")
    p.add_argument("--batch-size", type=int, help="sentences per batch")
    p.add_argument("--workers", type=int, metavar="N",
                   help="decode N batches of an input file at once, on N threads that share "
                        "the CPU threads (default: the model's decode.workers); 2 on 2 cores "
                        "makes greedy search 9-21 %% faster")
    p.add_argument("--scores", action="store_true", help="append a tab and the score")
    p.add_argument("--attention", metavar="FILE",
                   help="write attention weights of the best hypothesis as JSON lines")
    p.add_argument("--plot-attention", metavar="DIR",
                   help="write each input line's attention heat map to DIR/NNNNNN.png")
    _add_loading_options(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("evaluate", help="score hypotheses against references",
                       epilog=EVALUATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hyp", required=True, help="hypotheses, one per line")
    p.add_argument("--ref", required=True, action="append",
                   help="references, one line per hypothesis (tab-separated alternatives); "
                   "repeat for more reference files")
    p.add_argument("--metric", nargs="+", default=["bleu"],
                   choices=METRIC_NAMES, help="one or more metrics")
    p.add_argument("--lowercase", "-lc", action="store_true", help="case-insensitive scoring")
    p.add_argument("--no-stem", action="store_true", help="ROUGE without Porter stemming")
    p.add_argument("--bleu-tokenize", help="sacreBLEU tokenizer for BLEU (default 13a; "
                   "'none' for pre-tokenized text)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="serve models over HTTP (batching across requests)")
    p.add_argument("models", nargs="+", metavar="[NAME=]DIR",
                   help="model directories; each is named by its folder or NAME")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a batch waits for more requests")
    p.add_argument("--max-batch-tokens", type=int, default=4096,
                   help="source tokens per batch (estimated); longer requests are split")
    p.add_argument("--max-lines", type=int, default=256, help="lines per request")
    p.add_argument("--max-chars", type=int, default=100_000, help="characters per request")
    p.add_argument("--max-queue", type=int, default=4096,
                   help="lines waiting per model; beyond it requests get 503")
    _add_loading_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("average", help="average the weights of several checkpoints into a "
                       "new model directory")
    p.add_argument("inputs", nargs="+", help="model directories, or a training output "
                   "directory standing for all its kept checkpoints")
    p.add_argument("-o", "--output", required=True, help="new model directory to write")
    p.add_argument("--last", type=int, help="average only the newest N of the inputs")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("export", help="write a model as ONNX graphs that translate without "
                       "PyTorch (onnxruntime)")
    p.add_argument("model", help="model directory (e.g. OUT_DIR/best)")
    p.add_argument("-o", "--output", required=True, help="new directory to write")
    p.add_argument("--quantize", choices=["int8"],
                   help="int8: onnxruntime's dynamic int8 quantization of the graphs")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="train and test a grapheme-to-phoneme model on CMUdict")
    p.add_argument("--out", default="rnnseq-demo", help="working directory (default "
                   "./rnnseq-demo)")
    p.add_argument("--steps", type=int, help="training steps (default: the demo's own)")
    p.add_argument("--quick", action="store_true", help="a tiny run that checks the set-up")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="list every config key with its default, or check a "
                       "config file")
    p.add_argument("--check", metavar="CONFIG", help="validate this config file")
    _add_set_option(p)
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    from .errors import RnnseqError

    try:
        return args.func(args)
    except RnnseqError as err:
        print(f"rnnseq {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
