"""Typed configuration: dataclasses, YAML I/O and validation.

Every section is a dataclass; every field has a type and, where it matters, allowed values or a
lower bound. A wrong key or value raises :class:`ConfigError` naming the key (and the file and
line when it came from YAML) together with what would have been accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError

FORMAT_VERSION = 1

# Every choice a user makes by name is one of these types; the tuples, CLI choices and test
# parameters all come from them.
Cell = Literal["rnn", "lstm", "gru"]
Attention = Literal["none", "bahdanau", "luong_dot", "luong_general", "luong_concat"]
TokenizerKind = Literal["char", "word", "sentencepiece"]
Normalization = Literal["nfc", "nfd", "nfkc", "nfkd", "none"]
Precision = Literal["fp32", "bf16", "fp16"]
Quantization = Literal["int8"]
EnsembleMixture = Literal["probability", "log-linear"]
CELLS: tuple[str, ...] = typing.get_args(Cell)
ATTENTIONS: tuple[str, ...] = typing.get_args(Attention)
TOKENIZERS: tuple[str, ...] = typing.get_args(TokenizerKind)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
QUANTIZATIONS: tuple[str, ...] = typing.get_args(Quantization)
MIXTURES: tuple[str, ...] = typing.get_args(EnsembleMixture)

# Of a task, only its name and tag shape the model (its tag is a vocabulary entry).
TASK_MODEL_KEYS = ("name", "tag")


def _f(default: Any, *, min: float | None = None, gt: float | None = None, help: str = ""):
    """A dataclass field with a lower bound and a help text."""
    meta = {"min": min, "gt": gt, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class CorpusFiles:
    """Where training and validation pairs are (``data.*``, or a task's)."""

    train_src: str | None = _f(None, help="training source file (one sentence per line)")
    train_tgt: str | None = _f(None, help="training target file, aligned with train_src")
    train_tsv: str | None = _f(None, help="training pairs as 'source<TAB>target' lines")
    valid_src: str | None = _f(None, help="validation source file")
    valid_tgt: str | None = _f(None, help="validation target file")
    valid_tsv: str | None = _f(None, help="validation pairs as TSV")


# The keys that name a corpus's files (data.*, or a task's).
CORPUS_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CorpusFiles))
# Data keys that say where the data lives or how much of it is used; every other data key, and
# every model key, shapes the model or how it reads and writes text (see model_settings).
DATA_LOCATION_KEYS = frozenset(CORPUS_KEYS) | {"max_len", "max_src_len", "max_tgt_len"}


@dataclass
class TaskConfig(CorpusFiles):
    """One corpus of a multi-task run (``data.tasks``): its files, its share of the training
    examples and the tag token put before each of its sources."""

    name: str = _f("", help="the task's name (rnnseq translate --task NAME)")
    weight: float = _f(1.0, gt=0.0, help="share of the training examples, relative to the "
                       "other tasks' weights")
    tag: str | None = _f(None, help="a token before every source of the task, e.g. <title>")


@dataclass
class DataConfig(CorpusFiles):
    src_tokenizer: TokenizerKind = _f("word")
    tgt_tokenizer: TokenizerKind = _f("word")
    spm_vocab_size: int = _f(8000, min=8, help="SentencePiece vocabulary size (per side)")
    spm_model_type: Literal["unigram", "bpe"] = _f("unigram")
    shared_vocab: bool = _f(False, help="one vocabulary (and tokenizer) for both sides")
    src_lowercase: bool = _f(False, help="lowercase source text (also at translate time)")
    tgt_lowercase: bool = _f(False, help="lowercase target text")
    normalize: Normalization = _f(
        "nfc", help="Unicode form of both sides' text, also at translate time; nfd/nfkd "
        "outputs are recomposed to NFC"
    )
    src_normalize: Normalization | None = _f(None, help="source side only (null: normalize)")
    tgt_normalize: Normalization | None = _f(None, help="target side only (null: normalize)")
    min_freq: int = _f(1, min=1)
    max_vocab: int | None = _f(None, min=1, help="keep at most this many types per side")
    max_len: int = _f(
        100, min=1, help="drop training pairs with a side longer than this (tokens); a side "
        "with its own max_*_len is truncated instead"
    )
    max_src_len: int | None = _f(
        None, min=1, help="truncate training sources to this many tokens (e.g. long documents)"
    )
    max_tgt_len: int | None = _f(None, min=1, help="truncate training targets to this many tokens")
    tasks: list[TaskConfig] | None = _f(
        None, help="several training corpora in one run (multi-task): a list of {name, "
        "train_*, valid_*, weight, tag}; the data.train_*/valid_* keys then stay empty"
    )
    main_task: str | None = _f(
        None, help="the task whose validation picks checkpoints and stops training (default: "
        "the first); the others' validation loss is logged"
    )

    def normalization(self, side: str) -> Normalization:
        """The normalization of ``side`` (``src`` or ``tgt``): its own key, else ``normalize``."""
        own = self.src_normalize if side == "src" else self.tgt_normalize
        return self.normalize if own is None else own


@dataclass
class ModelConfig:
    cell: Cell = _f("lstm")
    layers: int = _f(1, min=1)
    hidden_size: int = _f(256, min=1, help="decoder size; also the encoder's output size")
    embedding_size: int = _f(128, min=1)
    dropout: float = _f(0.2, min=0.0, help="the rate of each of the three below left null")
    embedding_dropout: float | None = _f(None, min=0.0, help="on token embeddings")
    rnn_dropout: float | None = _f(None, min=0.0, help="between stacked RNN layers")
    output_dropout: float | None = _f(
        None, min=0.0, help="on encoder outputs and on decoder vectors before the output layer"
    )
    bidirectional: bool = _f(True, help="bidirectional encoder (each direction hidden_size/2)")
    attention: Attention = _f("luong_general")
    input_feeding: bool | None = _f(
        None, help="feed the previous attentional vector (Luong attention only; default on)"
    )
    bridge: Literal["linear", "copy", "zero"] = _f("linear")
    tie_embeddings: bool = _f(False, help="decoder output layer shares the target embeddings")
    copy_attention: bool = _f(
        False, help="pointer-generator: outputs may copy source tokens, also ones outside the "
        "target vocabulary"
    )
    coverage: bool = _f(
        False, help="the attention sees how much each source position received so far "
        "(see train.coverage_loss_weight)"
    )
    share_embeddings: bool = _f(False, help="source and target share one embedding table")

    def dropout_rate(self, where: str) -> float:
        """Dropout ``where`` (``embedding``, ``rnn`` or ``output``): its own key, else
        ``dropout``."""
        own = getattr(self, f"{where}_dropout")
        return self.dropout if own is None else own


@dataclass
class TrainConfig:
    out_dir: str = _f("model", help="model directory written by training")
    seed: int = _f(1)
    device: Literal["auto", "cpu", "cuda"] = _f("auto")
    threads: int | None = _f(None, min=1, help="torch intra-op threads on CPU")
    precision: Precision = _f(
        "fp32", help="bf16: autocast on CPU or GPU; fp16: autocast + loss scaling, GPU only"
    )
    batch_size: int = _f(64, min=1)
    batch_type: Literal["sentences", "tokens"] = _f("sentences")
    accumulate: int = _f(1, min=1, help="batches whose gradients are summed per update")
    max_steps: int | None = _f(10000, min=1)
    max_epochs: int | None = _f(None, min=1)
    max_minutes: float | None = _f(
        None, gt=0.0, help="stop after this much wall-clock time (validation included)"
    )
    optimizer: Literal["adam", "adamw", "sgd"] = _f("adam")
    lr: float = _f(1e-3, gt=0.0)
    weight_decay: float = _f(0.0, min=0.0)
    momentum: float = _f(0.0, min=0.0)
    schedule: Literal["constant", "inverse_sqrt", "step", "plateau", "cosine"] = _f(
        "constant", help="cosine: from lr to min_lr between the warm-up's end and max_steps"
    )
    warmup_steps: int = _f(0, min=0)
    decay_factor: float = _f(0.5, gt=0.0)
    decay_every: int = _f(1000, min=1, help="step schedule: steps between decays")
    plateau_patience: int = _f(2, min=0, help="plateau schedule: validations without gain")
    min_lr: float = _f(0.0, min=0.0)
    clip_norm: float | None = _f(5.0, gt=0.0)
    max_nonfinite: int = _f(
        10, min=1, help="stop after this many consecutive non-finite losses/gradients"
    )
    label_smoothing: float = _f(0.1, min=0.0)
    src_word_dropout: float = _f(
        0.0, min=0.0, help="replace each source token by <unk> with this probability (training)"
    )
    tgt_word_dropout: float = _f(
        0.0, min=0.0, help="the same for the decoder's input tokens (the previous target tokens)"
    )
    coverage_loss_weight: float = _f(
        1.0, min=0.0, help="lambda of See et al.'s coverage loss sum_i min(a_i, c_i) (with "
        "model.coverage)"
    )
    scheduled_sampling: Literal["none", "linear", "exponential", "inverse_sigmoid"] = _f(
        "none", help="feed the decoder its own predictions with a probability that grows "
        "from 0 to scheduled_sampling_max (Bengio et al. 2015; stepped decoder, slower)"
    )
    scheduled_sampling_max: float = _f(0.25, min=0.0, help="the largest probability (<= 1)")
    scheduled_sampling_steps: int = _f(
        10000, min=1, help="steps after the warm-up over which the probability rises"
    )
    scheduled_sampling_warmup: int = _f(0, min=0, help="steps of pure teacher forcing first")
    scheduled_sampling_choice: Literal["argmax", "sample"] = _f(
        "argmax", help="feed the most probable token, or a sample from the model"
    )
    valid_every: int = _f(500, min=1, help="validate and checkpoint every N steps")
    keep_checkpoints: int = _f(
        1, min=1, help="keep the N newest checkpoints (plus best), e.g. for `rnnseq average`"
    )
    save_every: int | None = _f(
        None, min=1, help="also checkpoint (without validating) every N steps"
    )
    valid_metric: Literal[
        "bleu", "chrf", "ser", "wer", "cer", "rouge", "rouge1", "rouge2", "rougeL", "loss"
    ] = _f("loss", help="rouge: ROUGE-L F1 (rouge1/rouge2/rougeL for one score)")
    valid_beam_size: int | None = _f(
        None, min=1, help="beam size when decoding for validation (default decode.beam_size)"
    )
    early_stopping_patience: int | None = _f(
        None, min=1, help="stop after this many validations without improvement"
    )
    log_every: int = _f(100, min=1)
    tensorboard: bool = _f(False)
    progress: bool = _f(True, help="show a progress bar on a terminal")


@dataclass
class DecodeConfig:
    beam_size: int = _f(5, min=1)
    n_best: int = _f(1, min=1)
    length_penalty: float = _f(1.0, min=0.0, help="GNMT alpha; 0 scores by raw log-probability")
    max_length_ratio: float = _f(2.0, gt=0.0, help="output at most ratio*source+5 tokens")
    max_length: int = _f(250, min=1, help="hard cap on output length")
    batch_size: int = _f(64, min=1, help="sentences per decoding batch")
    max_input_len: int = _f(
        1000, min=1, help="longer inputs are truncated to this many tokens, with a warning"
    )
    max_batch_tokens: int = _f(8192, min=1, help="source tokens per decoding batch")
    workers: int = _f(
        1, min=1, help="batches decoded at once, on as many threads, each with its share of the "
        "CPU threads (2 on 2 cores: greedy +9-21 %, beam 5 +13-14 %)"
    )
    min_length: int = _f(0, min=0, help="no </s> before this many output tokens")
    block_ngram_repeat: int = _f(
        0, min=0, help="N > 0: no output repeats an N-gram (Paulus et al. 2017)"
    )
    block_ngram_ignore: list[str] = _f(
        [], help="target tokens (e.g. punctuation) whose n-grams are never blocked"
    )
    coverage_penalty: float = _f(
        0.0, min=0.0, help="GNMT beta: add beta * sum_i log(min(attention to i, 1)) to scores"
    )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    format_version: int = FORMAT_VERSION

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict, source: str = "config", lines: dict | None = None) -> Config:
        """Build and validate from a nested dict, naming ``source`` in every error."""
        lines = lines or {}
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in sections:
                raise ConfigError(_unknown(source, lines, key, key, sections))
            if key == "format_version":
                kwargs[key] = _check_value(cls, sections[key], value, key, source, lines)
                if kwargs[key] > FORMAT_VERSION:
                    raise ConfigError(
                        f"{_where(source, lines, key)}format_version {kwargs[key]} is newer than "
                        f"this rnnseq understands ({FORMAT_VERSION}); upgrade rnnseq"
                    )
                continue
            kwargs[key] = _build_section(sections[key].type, value, key, source, lines)
        config = cls(**kwargs)
        config.validate(source)
        return config

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> Config:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})"
            ) from None
        raw, lines = _parse_yaml(text, str(path))
        raw = apply_overrides(raw or {}, overrides or [])
        return cls.from_dict(raw, str(path), lines)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    # -- cross-field checks ---------------------------------------------------------------
    def validate(self, source: str = "config") -> None:
        d, m, t = self.data, self.model, self.train
        _validate_tasks(d, source)
        if m.bidirectional and m.hidden_size % 2:
            raise ConfigError(
                f"{source}: model.hidden_size must be even with a bidirectional encoder "
                f"(got {m.hidden_size})"
            )
        if m.input_feeding and not m.attention.startswith("luong"):
            raise ConfigError(
                f"{source}: model.input_feeding applies to Luong attention only; "
                f"remove it or set it to false for attention: {m.attention}"
            )
        for key in ("copy_attention", "coverage"):
            if getattr(m, key) and m.attention == "none":
                raise ConfigError(f"{source}: model.{key} needs attention; set model.attention "
                                  "to bahdanau or a luong_* type")
        if m.tie_embeddings and m.embedding_size != m.hidden_size:
            raise ConfigError(
                f"{source}: model.tie_embeddings needs model.embedding_size == model.hidden_size "
                f"(got {m.embedding_size} and {m.hidden_size})"
            )
        if m.share_embeddings and not d.shared_vocab:
            raise ConfigError(f"{source}: model.share_embeddings needs data.shared_vocab: true")
        if d.shared_vocab and d.src_tokenizer != d.tgt_tokenizer:
            raise ConfigError(
                f"{source}: data.shared_vocab needs the same data.src_tokenizer and "
                f"data.tgt_tokenizer (got {d.src_tokenizer} and {d.tgt_tokenizer})"
            )
        if d.shared_vocab and d.src_lowercase != d.tgt_lowercase:
            raise ConfigError(
                f"{source}: data.shared_vocab needs data.src_lowercase == data.tgt_lowercase"
            )
        if d.shared_vocab and d.normalization("src") != d.normalization("tgt"):
            raise ConfigError(
                f"{source}: data.shared_vocab needs one normalization for both sides (got "
                f"{d.normalization('src')} for the source and {d.normalization('tgt')} for the "
                "target)"
            )
        for key in ("dropout", "embedding_dropout", "rnn_dropout", "output_dropout"):
            value = getattr(m, key)
            if value is not None and value >= 1.0:
                raise ConfigError(f"{source}: model.{key} must be below 1 (got {value})")
        for key in ("label_smoothing", "src_word_dropout", "tgt_word_dropout"):
            if getattr(t, key) >= 1.0:
                raise ConfigError(f"{source}: train.{key} must be below 1 (got "
                                  f"{getattr(t, key)})")
        if t.max_steps is None and t.max_epochs is None and t.max_minutes is None:
            raise ConfigError(
                f"{source}: set at least one of train.max_steps, train.max_epochs, "
                "train.max_minutes"
            )
        if t.schedule == "cosine" and t.max_steps is None:
            raise ConfigError(
                f"{source}: train.schedule: cosine decays towards train.max_steps; set it"
            )
        if t.schedule == "cosine" and t.max_steps is not None and t.warmup_steps >= t.max_steps:
            raise ConfigError(
                f"{source}: train.warmup_steps ({t.warmup_steps}) must be below "
                f"train.max_steps ({t.max_steps}) with schedule: cosine"
            )
        if self.decode.n_best > self.decode.beam_size:
            raise ConfigError(
                f"{source}: decode.n_best ({self.decode.n_best}) cannot exceed "
                f"decode.beam_size ({self.decode.beam_size})"
            )

    @property
    def input_feeding(self) -> bool:
        """Input feeding as resolved: on by default for Luong attention, off otherwise."""
        m = self.model
        if not m.attention.startswith("luong"):
            return False
        return True if m.input_feeding is None else m.input_feeding


# Model settings that a resumed run may switch on: each adds parameters, initialised so that the
# model computes what it did before, and changes none that exist (See et al. 2017 train with
# coverage only for a short final phase).
ADDABLE_SETTINGS = {"model.coverage": True}


def _validate_tasks(d: DataConfig, source: str) -> None:
    """A multi-task data section: named, distinct tasks with their own files and tags."""
    if d.tasks is None:
        if d.main_task is not None:
            raise ConfigError(f"{source}: data.main_task names a task, but data.tasks is empty")
        return
    given = [k for k in CORPUS_KEYS if getattr(d, k) is not None]
    if given:
        raise ConfigError(f"{source}: with data.tasks, each task names its own files; "
                          f"data.{given[0]} belongs to no task (move it into one)")
    names = [task.name for task in d.tasks]
    for i, task in enumerate(d.tasks):
        where = f"{source}: data.tasks[{i}]"
        if not task.name:
            raise ConfigError(f"{where}: every task needs a name")
        if names.count(task.name) > 1:
            raise ConfigError(f"{where}: two tasks are named {task.name!r}")
        if not (task.train_tsv or task.train_src or task.train_tgt):
            raise ConfigError(f"{where} ({task.name}): no training data; give train_tsv or "
                              "train_src and train_tgt")
        if task.tag is not None and (not task.tag or task.tag != task.tag.strip()
                                     or len(task.tag.split()) != 1):
            raise ConfigError(f"{where} ({task.name}): a tag is one token without spaces, "
                              f"got {task.tag!r}")
    tags = [task.tag for task in d.tasks if task.tag is not None]
    if len(set(tags)) != len(tags):
        raise ConfigError(f"{source}: data.tasks: two tasks share a tag; give each its own")
    if d.main_task is not None and d.main_task not in names:
        raise ConfigError(f"{source}: data.main_task {d.main_task!r} is not a task; the tasks "
                          f"are {', '.join(names)}")


def ordered_tasks(d: DataConfig) -> list[TaskConfig]:
    """``data.tasks`` with the main task (``data.main_task``, else the first) first."""
    if d.tasks is None:
        return []
    main = d.main_task or d.tasks[0].name
    return sorted(d.tasks, key=lambda task: task.name != main)


def task_tags(d: DataConfig) -> dict[str, str | None]:
    """Each task's tag by name, the main task first (empty without tasks)."""
    return {task.name: task.tag for task in ordered_tasks(d)}


def model_settings(config: Config) -> dict[str, Any]:
    """The settings that define a model, as ``{"section.key": value}``: every model key and
    every data key except where the data lives (:data:`DATA_LOCATION_KEYS`). Two model
    directories are the same model only if these agree; a resumed run may not change them."""
    out = {f"model.{k}": v for k, v in dataclasses.asdict(config.model).items()}
    out.update({f"data.{k}": v for k, v in dataclasses.asdict(config.data).items()
                if k not in DATA_LOCATION_KEYS})
    if out["data.tasks"] is not None:
        out["data.tasks"] = [{k: task[k] for k in TASK_MODEL_KEYS} for task in out["data.tasks"]]
    return out


# --------------------------------------------------------------------------------------------
def _where(source: str, lines: dict, key: str) -> str:
    line = lines.get(key)
    return f"{source}:{line}: " if line else f"{source}: "


def _unknown(source: str, lines: dict, dotted: str, key: str, allowed: dict) -> str:
    hint = difflib.get_close_matches(key, list(allowed), n=1)
    msg = f"{_where(source, lines, dotted)}unknown key '{dotted}'"
    if hint:
        msg += f" (did you mean '{hint[0]}'?)"
    return msg + f"; allowed keys: {', '.join(allowed)}"


def _build_section(section_type, raw: Any, name: str, source: str, lines: dict):
    if isinstance(section_type, str):
        section_type = globals()[section_type]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{_where(source, lines, name)}section '{name}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{name}.{key}"
        if key not in fields:
            raise ConfigError(_unknown(source, lines, dotted, str(key), fields))
        kwargs[key] = _check_value(section_type, fields[key], value, dotted, source, lines)
    return section_type(**kwargs)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        if typing.get_args(tp)[0] is TaskConfig:
            return "a list of tasks (mappings)"
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('a ')}s"
    return {type(None): "null", int: "an integer", float: "a number", str: "a string",
            bool: "true/false"}.get(tp, str(tp))


def _coerce(tp, value):
    """Return ``value`` as type ``tp`` or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(arg, value)
            except TypeError:
                pass
        raise TypeError
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise TypeError
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(tp)
            return [_coerce(item, v) for v in value]
        raise TypeError
    raise TypeError


def _check_value(section_type, f: dataclasses.Field, value, dotted: str, source: str, lines: dict):
    hints = typing.get_type_hints(section_type)
    tp = hints[f.name]
    if list[TaskConfig] in typing.get_args(tp) and value is not None:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{_where(source, lines, dotted)}{dotted}: expected "
                              f"{_type_name(tp)}, got {value!r}")
        return [_build_section(TaskConfig, item, f"{dotted}[{i}]", source, lines)
                for i, item in enumerate(value)]
    try:
        value = _coerce(tp, value)
    except TypeError:
        raise ConfigError(
            f"{_where(source, lines, dotted)}{dotted}: expected {_type_name(tp)}, got {value!r}"
        ) from None
    low, gt = f.metadata.get("min"), f.metadata.get("gt")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        where = _where(source, lines, dotted)
        if low is not None and value < low:
            raise ConfigError(f"{where}{dotted} must be >= {low}, got {value}")
        if gt is not None and value <= gt:
            raise ConfigError(f"{where}{dotted} must be > {gt}, got {value}")
    return value


def _parse_yaml(text: str, source: str) -> tuple[Any, dict]:
    """Parse YAML safely and record the line of every ``section.key``."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:  # one parse: the node tree gives the lines, the same tree gives the values
        node = loader.get_single_node()
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            lines[str(key_node.value)] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.MappingNode):
                for sub_key, sub_value in value_node.value:
                    dotted = f"{key_node.value}.{sub_key.value}"
                    lines[dotted] = sub_key.start_mark.line + 1
                    if isinstance(sub_value, yaml.SequenceNode):  # data.tasks[i].key
                        for i, item in enumerate(sub_value.value):
                            lines[f"{dotted}[{i}]"] = item.start_mark.line + 1
                            if isinstance(item, yaml.MappingNode):
                                for k, _ in item.value:
                                    lines[f"{dotted}[{i}].{k.value}"] = k.start_mark.line + 1
    return raw, lines


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides (value parsed as YAML) to a raw config dict."""
    raw = dict(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: the key must look like section.key")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: cannot parse value: {err}") from None
        section = dict(raw.get(parts[0]) or {})
        section[parts[1]] = value
        raw[parts[0]] = section
    return raw


def describe() -> str:
    """Every section, key, type and default: the reference printed by ``rnnseq config``."""
    out = []
    for section in dataclasses.fields(Config):
        if section.name == "format_version":
            continue
        cls = section.default_factory  # type: ignore[misc]
        out.append(f"{section.name}:")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            help_text = f.metadata.get("help", "")
            line = f"  {f.name}: {default!r:<16} # {_type_name(hints[f.name])}"
            out.append(line + (f"; {help_text}" if help_text else ""))
            if f.name == "tasks":  # the keys of each task
                task_hints = typing.get_type_hints(TaskConfig)
                for tf in dataclasses.fields(TaskConfig):
                    out.append(f"    - {tf.name}: {tf.default!r:<12} # "
                               f"{_type_name(task_hints[tf.name])}; {tf.metadata.get('help')}")
    return "\n".join(out)
