"""The PyTorch side of translation: loaded models (one, or an ensemble), their precision and
int8 quantization, encoding a batch into the state search steps, sampling and scoring.

:class:`rnnseq.inference.translator.Translator` does everything around it (text, batches,
rules, search); :class:`rnnseq.runtime.onnx_backend.OnnxBackend` is the same contract with
ONNX graphs and no torch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch

from ..data.batching import collate, pad
from ..data.vocab import EOS_ID, PAD_ID, UNK_ID
from ..errors import UsageError
from ..modeldir import ModelBundle
from ..precision import PRECISIONS, autocast, precision_dtype
from .ensemble import EnsembleDecoder, EnsembleState
from .sampling import Sampler, Sampling
from .search import SearchState, StepDecoder


class TorchBackend:
    """``bundles`` (one model directory each; an ensemble when several) on ``device``.
    ``bundle`` is the first member's: its tokenizers and vocabularies serve all."""

    def __init__(
        self, bundles: ModelBundle | list[ModelBundle], device: str | torch.device = "cpu",
        precision: str = "fp32", quantize: str | None = None, mixture: str = "probability",
        paths: list[str] | None = None,
    ) -> None:
        from ..config import QUANTIZATIONS
        from .ensemble import MIXTURES, check_members
        from .quantize import int8_stepper, quantize_int8

        bundles = bundles if isinstance(bundles, list) else [bundles]
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        if quantize is not None and quantize not in QUANTIZATIONS:
            raise UsageError(f"quantize must be {' or '.join(QUANTIZATIONS)}, "
                             f"got {quantize!r}")
        if mixture not in MIXTURES:
            raise UsageError(f"ensemble mixture must be {' or '.join(MIXTURES)}, "
                             f"got {mixture!r}")
        check_members(bundles, paths or [f"model {i + 1}" for i in range(len(bundles))])
        self.bundles, self.bundle = bundles, bundles[0]
        self.device = torch.device(device)
        self.precision, self.quantize, self.mixture = precision, quantize, mixture
        if quantize:
            if self.device.type != "cpu":
                raise UsageError(f"--quantize {quantize} runs on the CPU; drop --device "
                                 f"{self.device.type} or the quantization")
            if precision != "fp32":
                raise UsageError(f"--quantize {quantize} computes in int8 and fp32; drop "
                                 f"--precision {precision} or the quantization")
            self.steppers = [int8_stepper(b.model.cpu()) for b in bundles]
            self.models = [quantize_int8(b.model) for b in bundles]
        else:
            self.models = [b.model.to(self.device).eval() for b in bundles]
            self.steppers = [_stepper(m, self.device, precision) for m in self.models]
        self.model = self.models[0]
        self.copy = any(m.decoder.copy for m in self.models)  # any member: extended ids
        # an ensemble's attention is the mean of its members' that have one
        self.has_attention = any(m.decoder.attention is not None for m in self.models)

    @property
    def num_parameters(self) -> int:
        return sum(m.num_parameters() for m in self.models)

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """Where encoding and every search step run: no autograd, the chosen precision."""
        with torch.no_grad(), autocast(self.device, self.precision):
            yield

    @contextlib.contextmanager
    def workers(self, count: int) -> Iterator[Callable[[], None]]:
        """``count`` decoding threads on the CPU share torch's intra-op threads (at least one
        each): one thread per batch avoids the fork and join of every small operator, and
        while one batch runs Python the other's operators run. Restored on exit."""
        if self.device.type != "cpu":  # a GPU's kernels do not use the intra-op threads
            yield lambda: None
            return
        total = torch.get_num_threads()
        share = max(1, total // count)
        try:
            yield lambda: torch.set_num_threads(share)
        finally:
            torch.set_num_threads(total)

    def start(self, tokens: Sequence[Sequence[str]], src_maps: Sequence[Sequence[int]]
              ) -> tuple[StepDecoder, SearchState]:
        """Encode source sentences (as tokens; with their extended-vocabulary ids for copy
        attention): the decoder and state search starts from."""
        states = [model.init_state(model.encode(b.src, b.src_lengths), b.src_map, stepper)
                  for model, b, stepper in zip(self.models, self._collate(tokens, src_maps),
                                               self.steppers, strict=True)]
        if len(states) == 1:
            return self.model.decoder, states[0]
        return (EnsembleDecoder([m.decoder for m in self.models], self.mixture),
                EnsembleState(tuple(states)))

    def sampler(self, sampling: Sampling, streams: list[tuple[int, int]]) -> Sampler:
        return Sampler(sampling, streams)

    def score(self, tokens: Sequence[Sequence[str]], src_maps: Sequence[Sequence[int]],
              targets: Sequence[Sequence[int]]) -> list[float]:
        """Each target's log-probability (its ids, ``</s>`` added) by teacher forcing."""
        per_member = []
        batches = self._collate(tokens, src_maps, targets)
        with torch.no_grad():
            for model, batch in zip(self.models, batches, strict=True):
                with autocast(self.device, self.precision):
                    lp = model(batch.src, batch.src_lengths, batch.tgt_in, batch.src_map)
                per_member.append(lp.float())
            gold = pad([[*t, EOS_ID] for t in targets]).to(self.device)  # extended ids
            total = _mix_gold(per_member, gold, self.mixture).masked_fill(gold == PAD_ID, 0.0)
        return total.sum(dim=1).tolist()

    def _collate(self, tokens: Sequence[Sequence[str]], src_maps: Sequence[Sequence[int]],
                 targets: Sequence[Sequence[int]] | None = None) -> list:
        """One batch per member (each encodes the tokens with its own source vocabulary)."""
        out = []
        index = list(range(len(tokens)))
        for bundle, model in zip(self.bundles, self.models, strict=True):
            src = [bundle.src_vocab.encode(t) for t in tokens]
            src_map = list(src_maps) if model.decoder.copy else None
            tgt = None if targets is None else [
                [t if t < len(bundle.tgt_vocab) else UNK_ID for t in target]
                for target in targets]
            tgt_ext = None if targets is None or not model.decoder.copy else list(targets)
            out.append(collate(src, tgt, index, src_map, tgt_ext).to(self.device))
        return out


def _stepper(model: torch.nn.Module, device: torch.device, precision: str):
    """What ``model`` decodes with, prepared once for all batches: on the CPU in fp32 its
    step, combination and output matrices packed for MKL (:mod:`.packed`), otherwise its step
    matrices cast to the precision's dtype. Built from the weights as they are now: a backend
    serves a model that no longer trains (the trainer makes one per validation)."""
    from .packed import MklMatrix, mkl_packing_available

    with torch.no_grad():
        if device.type == "cpu" and precision == "fp32" and mkl_packing_available():
            return model.decoder.inference_stepper(pack=MklMatrix)
        return model.decoder.inference_stepper(precision_dtype(precision))


def _mix_gold(per_member: list[torch.Tensor], gold: torch.Tensor, mixture: str) -> torch.Tensor:
    """Each member's teacher-forced log-probabilities ``(B, T, V_m)`` combined as the
    ensemble's, at the ``gold (B, T)`` tokens."""
    if len(per_member) == 1:
        return per_member[0].gather(2, gold[..., None]).squeeze(2)
    size = max(lp.shape[-1] for lp in per_member)
    lps = torch.stack([torch.nn.functional.pad(lp, (0, size - lp.shape[-1]),
                                               value=float("-inf")) for lp in per_member])
    if mixture == "probability":
        mixed = torch.logsumexp(lps, dim=0) - math.log(len(per_member))
    else:
        mixed = torch.log_softmax(lps.mean(dim=0), dim=-1)
    return mixed.gather(2, gold[..., None]).squeeze(2)
