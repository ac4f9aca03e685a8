"""The training loop: batches, optimisation, validation, early stopping, checkpoints, resume."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Config, ConfigError, model_settings
from ..data.batching import make_batches
from ..data.dataset import Dataset
from ..errors import OutputError, TrainingError
from ..faults import fault_point
from ..inference.translator import Translator
from ..metrics import is_better, score
from ..model.seq2seq import Seq2Seq
from ..modeldir import ModelBundle, load_config, load_weights
from ..precision import autocast
from .checkpoint import (
    check_resume_config,
    load_trainer_state,
    restore_optimizer,
    save_checkpoint,
    set_rng_state,
)
from .data_setup import prepare_data
from .distributed import Distributed
from .loss import sequence_loss, word_dropout
from .schedule import Schedule
from .scheduled_sampling import sampling_rate, scheduled_inputs

log = logging.getLogger("rnnseq")


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    best_step: int | None
    best_value: float | None
    metric: str
    history: list[dict] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def best_dir(self) -> Path:
        return self.out_dir / "best"

    @property
    def last_dir(self) -> Path:
        return self.out_dir / "last"


class LossModule(torch.nn.Module):
    """The training loss as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src, src_lengths, tgt_in, tgt_out, smoothing, src_map, coverage_weight,
                scheduled=None):
        return sequence_loss(self.model, src, src_lengths, tgt_in, tgt_out, smoothing, src_map,
                             coverage_weight, scheduled)


def resolve_device(name: str, precision: str = "fp32") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but no CUDA device is available")
    if precision == "fp16" and name != "cuda":
        raise ConfigError("train.precision: fp16 needs a CUDA device; use bf16 on CPU")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains one model as configured. ``Trainer(config).train()`` runs to the end."""

    def __init__(self, config: Config, resume: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.out_dir = Path(config.train.out_dir)
        self.dist = Distributed.from_env()
        self.device = resolve_device(config.train.device, config.train.precision)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.ddp = None
        self.history: list[dict] = []

    # -- set-up -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        cfg = self.config
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        elif self.dist.enabled and self.device.type == "cpu":  # processes share the cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.dist.local_world))
        self.dist.init(self.device)
        last = self.out_dir / "last"
        if self.resume:
            if not last.exists():
                raise TrainingError(f"--resume: {last} not found; nothing to resume")
            saved = load_config(last)
            for change in check_resume_config(saved, cfg, "--resume"):
                log.info("resume: config change accepted: %s", change)
        elif last.exists():
            raise TrainingError(
                f"{self.out_dir} already holds a training run ({last} exists); pass --resume "
                "to continue it, or set train.out_dir to another directory"
            )
        seed_everything(t.seed)
        data = prepare_data(cfg, self.dist, last if self.resume else None)
        self.vocab, self.train_data, self.valid_data = data.vocab, data.train, data.valid
        self.sampler, self.task_valid = data.sampler, data.task_valid
        self.model = Seq2Seq(cfg, len(self.vocab.src_vocab), len(self.vocab.tgt_vocab))
        self.model.to(self.device)
        log.info("model: %s %s, attention %s, %s parameters", cfg.model.cell,
                 "bidirectional" if cfg.model.bidirectional else "unidirectional",
                 cfg.model.attention, f"{self.model.num_parameters():,}")
        self.optimizer = self._make_optimizer()
        self.scaler = (torch.amp.GradScaler(self.device.type) if t.precision == "fp16"
                       else None)
        self.schedule = Schedule(t)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed_before = 0.0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.bad_validations = 0
        self.nonfinite = 0
        self.consecutive_nonfinite = 0
        if self.resume:
            self._restore(last)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            torch.manual_seed(t.seed * 1_000 + self.dist.rank)  # own dropout masks per process
            if self.resume:
                self._restore_rank_rng()
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(LossModule(self.model), device_ids=ids)
            self.dist.broadcast(None)  # every process is ready

    def _restore_rank_rng(self) -> None:
        states = self._resume_state.get("rng_ranks") or []
        if len(states) == self.dist.world:
            torch.set_rng_state(torch.tensor(states[self.dist.rank], dtype=torch.uint8))
        else:
            log.warning("resume: the checkpoint was written by %d processes, this run has %d; "
                        "dropout masks will differ from an uninterrupted run", len(states),
                        self.dist.world)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.config.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        if t.optimizer == "adam":
            return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
        if t.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)

    def _bundle(self) -> ModelBundle:
        v = self.vocab
        return ModelBundle(self.config, self.model, v.src_vocab, v.tgt_vocab, v.src_tokenizer,
                           v.tgt_tokenizer)

    def _restore(self, last: Path) -> None:
        # Parameters a switched-on ADDABLE_SETTINGS key adds are not in the checkpoint; they
        # keep their initial values and start without optimizer state.
        added = self._added_parameters(load_config(last))
        load_weights(self.model, last, missing_ok=added)
        tensors, state = load_trainer_state(last.resolve())
        self._resume_state = state
        names = [name for name, _ in self.model.named_parameters()]
        restore_optimizer(self.optimizer, tensors, state,
                          {i for i, name in enumerate(names) if name in added})
        if added:
            log.info("resume: %d new parameter tensors (%s) start from their initial values",
                     len(added), ", ".join(sorted(added)))
        self.schedule.load_state_dict(state["schedule"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.elapsed_before = state["batch_in_epoch"], state["elapsed"]
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.bad_validations, self.history = state["bad_validations"], state["history"]
        self.nonfinite = state.get("nonfinite", 0)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(tensors, state["rng"])
        log.info("resumed from %s at step %d (epoch %d, batch %d)", last.resolve(), self.step,
                 self.epoch + 1, self.batch_in_epoch)

    def _added_parameters(self, saved: Config) -> set[str]:
        """Names of the parameters that the resumed config adds to the saved one's model (only
        an ADDABLE_SETTINGS key switched on can add any: check_resume_config refuses the rest)."""
        if model_settings(saved) == model_settings(self.config):
            return set()
        before = Seq2Seq(saved, len(self.vocab.src_vocab), len(self.vocab.tgt_vocab))
        return ({name for name, _ in self.model.named_parameters()}
                - {name for name, _ in before.named_parameters()})

    # -- the loop -----------------------------------------------------------------------------
    def train(self) -> TrainResult:
        # Set-up messages are held in memory: nothing is written before the input is known
        # to be valid, and then train.log gets them all.
        memory = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
        log.addHandler(memory)
        level = log.level
        if not self.dist.is_main:
            log.setLevel(logging.WARNING)  # one process reports; the others only warn
        elif log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)  # train.log always gets the full record
        handler = None
        try:
            try:
                self._prepare()
            finally:
                log.removeHandler(memory)
            if self.dist.is_main:
                try:
                    self.out_dir.mkdir(parents=True, exist_ok=True)
                    handler = logging.FileHandler(self.out_dir / "train.log", encoding="utf-8")
                except OSError as err:
                    raise OutputError(f"cannot write to train.out_dir {self.out_dir}: "
                                      f"{err.strerror or err}") from None
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
                memory.setTarget(handler)
                memory.close()  # flushes the held records into train.log
                log.addHandler(handler)
            return self._loop()
        finally:
            if handler is not None:
                log.removeHandler(handler)
                handler.close()
            log.setLevel(level)
            self.dist.close()

    def _loop(self) -> TrainResult:
        t = self.config.train
        self.started = time.perf_counter()
        writer = self._tensorboard()
        bar = self._progress_bar()
        data = self.train_data
        stop_reason = ""
        window_tokens, window_loss, window_start = 0, 0.0, time.perf_counter()
        last_saved = self.step if self.resume else -1
        while not stop_reason:
            if t.max_epochs is not None and self.epoch >= t.max_epochs:
                stop_reason = f"reached train.max_epochs ({t.max_epochs})"
                break
            # One global batch per update: batch_size x accumulate x processes; each process
            # takes its share and runs it in `accumulate` pieces.
            pieces = self.dist.world * t.accumulate
            # with tasks, the epoch's examples (indices into data) come from the task sampler
            examples = (list(range(len(data))) if self.sampler is None
                        else self.sampler.epoch(self.epoch))
            batches = make_batches([len(data.src[i]) for i in examples],
                                   [len(data.tgt[i]) for i in examples], t.batch_size * pieces,
                                   t.batch_type, shuffle=True, seed=t.seed * 100_003 + self.epoch)
            if self.sampler is not None:
                batches = [[examples[p] for p in b] for b in batches]
            if self.dist.enabled:
                batches = [b for b in batches if len(b) >= self.dist.world]
            while self.batch_in_epoch < len(batches):
                loss, ntok = self._train_step(batches[self.batch_in_epoch])
                self.batch_in_epoch += 1
                if loss is None:  # update skipped: non-finite loss or gradient
                    continue
                window_loss += loss
                window_tokens += ntok
                if bar is not None:
                    rate = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                    bar.update(1)
                    bar.set_postfix_str(
                        f"loss {window_loss / max(window_tokens, 1):.3f} tok/s {rate:,.0f} "
                        f"lr {self.schedule.lr(self.step):.2e}", refresh=False)
                if self.step % t.log_every == 0 and window_tokens:
                    rate = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                    avg = window_loss / window_tokens
                    log.info("step %d  epoch %d  loss %.4f  ppl %.2f  lr %.3g  %s tgt tok/s",
                             self.step, self.epoch + 1, avg, math.exp(min(avg, 50)),
                             self.schedule.lr(self.step), f"{rate:,.0f}")
                    if writer:
                        writer.add_scalar("train/loss", avg, self.step)
                        writer.add_scalar("train/lr", self.schedule.lr(self.step), self.step)
                        writer.add_scalar("train/tokens_per_s", rate, self.step)
                    window_tokens, window_loss, window_start = 0, 0.0, time.perf_counter()
                stop_reason = self._limits_reached()
                if self.dist.enabled and t.max_minutes is not None:
                    stop_reason = self.dist.broadcast(stop_reason)  # clocks differ a little
                pause = time.perf_counter()
                if self.step % t.valid_every == 0 or stop_reason:
                    stop_reason = self._agreed_checkpoint(writer) or stop_reason
                    last_saved = self.step
                elif t.save_every and self.step % t.save_every == 0:
                    self._agreed_checkpoint(writer, validate=False)
                    last_saved = self.step
                window_start += time.perf_counter() - pause  # keep checkpoints out of tok/s
                if stop_reason:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
        if last_saved != self.step:
            self._agreed_checkpoint(writer)
        if bar is not None:
            bar.close()
        if writer:
            writer.close()
        log.info("training stopped at step %d: %s", self.step, stop_reason)
        if self.best_value is not None:
            log.info("best checkpoint: %s (step %d, %s %.4f)", self.out_dir / "best",
                     self.best_step, t.valid_metric, self.best_value)
        else:
            log.info("no validation data: %s is the last checkpoint", self.out_dir / "best")
        return TrainResult(self.out_dir, self.step, self.best_step, self.best_value,
                           t.valid_metric, self.history, stop_reason)

    @property
    def elapsed(self) -> float:
        """Wall-clock seconds of training so far, validation included, across resumes."""
        return self.elapsed_before + time.perf_counter() - self.started

    def _limits_reached(self) -> str:
        t = self.config.train
        if t.max_steps is not None and self.step >= t.max_steps:
            return f"reached train.max_steps ({t.max_steps})"
        if t.max_minutes is not None and self.elapsed >= 60 * t.max_minutes:
            return f"reached train.max_minutes ({t.max_minutes})"
        return ""

    def _train_step(self, index: list[int]) -> tuple[float | None, int]:
        """One update from one global batch (its example indices)."""
        fault_point("step")
        t = self.config.train
        data = self.train_data
        # The loss is normalised by the target tokens of the whole global batch, which every
        # process can count from the lengths: no communication needed.
        ntok = sum(len(data.tgt[i]) + 1 for i in index)
        mine = self.dist.shard(index)
        group = [p for p in (mine[k :: t.accumulate] for k in range(t.accumulate)) if p]
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        nll_total = 0.0
        for k, index in enumerate(group):
            batch = data.batch(index).to(self.device)
            last = k == len(group) - 1
            sync = (contextlib.nullcontext() if self.ddp is None or last
                    else self.ddp.no_sync())  # all-reduce gradients once, after the last
            with sync:
                with autocast(self.device, t.precision):
                    src = word_dropout(batch.src, t.src_word_dropout)
                    tgt_in = word_dropout(batch.tgt_in, t.tgt_word_dropout, skip_first=True)
                    args = (src, batch.src_lengths, tgt_in, batch.tgt_out, t.label_smoothing,
                            batch.src_map, t.coverage_loss_weight,
                            scheduled_inputs(tgt_in, sampling_rate(t, self.step),
                                             t.scheduled_sampling_choice))
                    if self.ddp is not None:
                        loss_sum, nll_sum, _ = self.ddp(*args)
                    else:
                        loss_sum, nll_sum, _ = sequence_loss(self.model, *args)
                # DDP averages gradients over processes, hence the factor world.
                loss = loss_sum * (self.dist.world / ntok)
                if self.scaler is not None:  # fp16: scaled loss, unscaled before clipping
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            nll_total += float(nll_sum.detach())
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        nll_sum = torch.tensor(self.dist.sum([nll_total], self.device)[0])
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if t.clip_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, t.clip_norm)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        nll = float(nll_sum.detach())
        # With fp16 an overflowing gradient is routine: the scaler skips that update and
        # lowers its scale. Only a non-finite loss counts as a fault then.
        grad_ok = self.scaler is not None or math.isfinite(float(norm))
        if not (math.isfinite(nll) and grad_ok):
            self.nonfinite += 1
            self.consecutive_nonfinite += 1
            log.warning("step %d: non-finite loss or gradient; update skipped (%d so far)",
                        self.step + 1, self.nonfinite)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()
            if self.consecutive_nonfinite >= t.max_nonfinite:
                raise TrainingError(
                    f"{self.consecutive_nonfinite} consecutive non-finite losses or gradients "
                    f"(train.max_nonfinite); stopped at step {self.step}. The last good "
                    f"checkpoint is {self.out_dir / 'last'}. Try a lower train.lr or "
                    "train.clip_norm."
                )
            return None, ntok
        self.consecutive_nonfinite = 0
        self.step += 1
        lr = self.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return nll, ntok

    # -- validation and checkpoints ----------------------------------------------------------
    def evaluate_loss(self, data: Dataset | None = None) -> tuple[float, float]:
        """(mean NLL per token, perplexity) on ``data`` (default: the validation data)."""
        data = self.valid_data if data is None else data
        assert data is not None
        self.model.eval()
        total, tokens = 0.0, 0
        batches = make_batches([len(s) for s in data.src], [len(s) for s in data.tgt],
                               self.config.train.batch_size, self.config.train.batch_type)
        with torch.no_grad():
            for index in batches:
                batch = data.batch(index).to(self.device)
                with autocast(self.device, self.config.train.precision):
                    _, nll, ntok = sequence_loss(self.model, batch.src, batch.src_lengths,
                                                 batch.tgt_in, batch.tgt_out,
                                                 src_map=batch.src_map)
                total += float(nll)
                tokens += ntok
        mean = total / max(tokens, 1)
        return mean, math.exp(min(mean, 50))

    def _validate(self) -> dict:
        t = self.config.train
        result: dict = {"step": self.step}
        if self.valid_data is None:
            return result
        fault_point("validation")
        loss, ppl = self.evaluate_loss()
        result.update(loss=loss, ppl=ppl)
        for name, data in self.task_valid.items():  # the other tasks: logged, not selected on
            task_loss, task_ppl = self.evaluate_loss(data)
            log.info("validation of task %s: loss %.4f ppl %.2f", name, task_loss, task_ppl)
            result[f"loss_{name}"] = task_loss
        if t.valid_metric != "loss":
            # A source that occurs several times is decoded once and scored against all its
            # targets as alternative references (G2P words with several pronunciations).
            # Sources are grouped and references scored as the model reads and writes text.
            src_norm = self.vocab.src_tokenizer.normalizer
            tgt_norm = self.vocab.tgt_tokenizer.normalizer
            refs_of: dict[str, list[str]] = {}
            for src, ref in zip(self.valid_data.src_text, self.valid_data.tgt_text, strict=True):
                refs_of.setdefault(src_norm(src), []).append(tgt_norm.reference(ref))
            translator = Translator(self._bundle(), self.device, t.precision)
            hyps = translator.translate(list(refs_of), beam_size=t.valid_beam_size)
            result[t.valid_metric] = score(t.valid_metric, hyps, list(refs_of.values())).value
        return result

    def _agreed_checkpoint(self, writer, validate: bool = True) -> str:
        """Validate and save on the main process; every process learns the outcome (the stop
        decision and the learning-rate schedule's state) from it."""
        if not self.dist.enabled:
            return self._checkpoint(writer, validate)
        rng_ranks = self.dist.gather(torch.get_rng_state().tolist())
        outcome: tuple = ("", None, None)
        if self.dist.is_main:
            try:
                outcome = (self._checkpoint(writer, validate, rng_ranks),
                           self.schedule.state_dict(), None)
            except TrainingError as err:
                outcome = ("", None, str(err))
        stop, schedule, error = self.dist.broadcast(outcome)
        if error:
            raise TrainingError(error)
        self.schedule.load_state_dict(schedule)
        return stop

    def _checkpoint(self, writer, validate: bool = True, rng_ranks: list | None = None) -> str:
        """Validate (unless told not to) and save; returns a stop reason or ''."""
        t = self.config.train
        result = self._validate() if validate else {}
        if validate:
            self.history.append(result)
        metric = t.valid_metric
        stop = ""
        is_best = self.valid_data is None  # nothing to compare on: the latest is the best
        if metric in result:
            value = result[metric]
            is_best = is_better(metric, value, self.best_value)
            if is_best:
                self.best_value, self.best_step, self.bad_validations = value, self.step, 0
            else:
                self.bad_validations += 1
            if self.schedule.report(value, metric):
                log.info("plateau: learning rate scaled to %.3g", self.schedule.lr(self.step))
            parts = [f"{k} {v:.4f}" for k, v in result.items() if k != "step"]
            log.info("validation at step %d: %s%s", self.step, "  ".join(parts),
                     "  (new best)" if is_best else f"  (best {self.best_value:.4f} at step "
                     f"{self.best_step})")
            if writer:
                for k, v in result.items():
                    if k != "step":
                        writer.add_scalar(f"valid/{k}", v, self.step)
            patience = t.early_stopping_patience
            if patience is not None and self.bad_validations >= patience:
                stop = (f"early stopping: no improvement of {metric} in {patience} validations")
        elif is_best:
            self.best_step = self.step
        state = {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "elapsed": self.elapsed, "best_value": self.best_value, "best_step": self.best_step,
            "bad_validations": self.bad_validations, "history": self.history,
            "schedule": self.schedule.state_dict(), "nonfinite": self.nonfinite,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng_ranks": rng_ranks,
        }
        try:
            save_checkpoint(self.out_dir, self._bundle(), self.optimizer, state, is_best,
                            self.config.train.keep_checkpoints)
        except OutputError as err:
            last = self.out_dir / "last"
            kept = f"{last} -> {last.resolve().name}" if last.exists() else "none yet"
            raise TrainingError(f"{err}. Stopped at step {self.step}; the last complete "
                                f"checkpoint is kept ({kept}).") from None
        return stop

    # -- reporting ------------------------------------------------------------------------------
    def _tensorboard(self):
        if not self.config.train.tensorboard or not self.dist.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out_dir / "tensorboard"))

    def _progress_bar(self):
        import sys

        t = self.config.train
        if not t.progress or not sys.stderr.isatty() or not self.dist.is_main:
            return None
        from tqdm import tqdm

        return tqdm(total=t.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                    desc="training", leave=True)


def train(config: Config, resume: bool = False) -> TrainResult:
    """Train a model as ``config`` says; see :class:`Trainer`."""
    return Trainer(config, resume).train()
