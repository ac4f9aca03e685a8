"""Reduced-precision decoding: int8 dynamic quantization and bf16 autocast stay close to fp32."""

import pytest
import torch

from rnnseq.errors import UsageError
from rnnseq.inference.quantize import Int8Matrix, int8_stepper, quantize_int8
from rnnseq.inference.search import beam_search, greedy_search, max_lengths
from rnnseq.inference.translator import Translator
from rnnseq.precision import autocast

from .conftest import tiny_model, variants
from .test_search import SRC, _src


def step_log_probs(model, steps=4, stepper=None):
    """Log-probabilities of a few teacher-forced decoder steps over a mixed-length batch."""
    src, lengths = _src(SRC)
    state = model.init_state(model.encode(src, lengths), stepper=stepper)
    prev = torch.full((len(SRC),), 2)
    out = []
    for t in range(steps):
        lp, state, _ = model.decoder.step(prev, state)
        out.append(lp)
        prev = torch.full((len(SRC),), 4 + t)
    return torch.stack(out)


@pytest.mark.parametrize("cell, attention, feed", variants())
def test_int8_model_follows_fp32(cell, attention, feed):
    model = tiny_model(cell, attention, feed, seed=7, hidden_size=32, embedding_size=16)
    with torch.no_grad():
        ref = step_log_probs(model)
        q = quantize_int8(model)
        stepper = int8_stepper(q)
        got = step_log_probs(q, stepper=stepper)
    assert "quantized" in type(q.decoder.out).__module__
    if cell != "rnn":  # PyTorch has no dynamic int8 nn.RNN: a plain RNN encoder stays fp32
        assert "quantized" in type(q.encoder.rnn).__module__
    assert all(isinstance(layer[0], Int8Matrix) for layer in stepper.weights)
    assert stepper.out is None and stepper.combine is None  # quantized modules already
    assert (got - ref).exp().sub(1).abs().max() < 0.1  # probabilities within 10 % relative
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9
    # the original model is left untouched (the quantized one is a copy)
    assert isinstance(model.decoder.out, torch.nn.Linear)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_int8_search_runs_greedy_and_beam(cell):
    model = quantize_int8(tiny_model(cell, "luong_general", seed=2))
    stepper = int8_stepper(model)
    src, lengths = _src(SRC)
    limits = max_lengths(lengths, 2.0, 20)
    with torch.no_grad():
        greedy = greedy_search(model.decoder,
                               model.init_state(model.encode(src, lengths), stepper=stepper),
                               limits)
        beam = beam_search(model.decoder,
                           model.init_state(model.encode(src, lengths), stepper=stepper),
                           limits, 3, n_best=2)
    assert len(greedy) == len(beam) == len(SRC)
    assert all(len(h) == 2 and h[0].score >= h[1].score for h in beam)


@pytest.mark.parametrize("cell, attention, feed", variants()[:4])
def test_bf16_decoding_follows_fp32(cell, attention, feed):
    """bf16 autocast decoding (step matrices cast once per batch) stays close to fp32."""
    model = tiny_model(cell, attention, feed, seed=4, hidden_size=32, embedding_size=16)
    with torch.no_grad():
        ref = step_log_probs(model)
        with autocast(torch.device("cpu"), "bf16"):
            got = step_log_probs(model)
    assert got.dtype == torch.float32
    assert (got - ref).exp().sub(1).abs().max() < 0.1


def test_quantize_option_is_checked(tmp_path):
    from rnnseq.modeldir import ModelBundle

    bundle = ModelBundle(None, tiny_model(), None, None, None, None)
    with pytest.raises(UsageError, match="quantize must be int8"):
        Translator(bundle, quantize="int4")
    with pytest.raises(UsageError, match="drop --precision bf16"):
        Translator(bundle, precision="bf16", quantize="int8")
