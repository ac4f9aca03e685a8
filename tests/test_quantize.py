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
        stepper = int8_stepper(model)
        q = quantize_int8(model)
        got = step_log_probs(q, stepper=stepper)
    assert "quantized" in type(q.decoder.out).__module__
    if cell != "rnn":  # PyTorch has no dynamic int8 nn.RNN: a plain RNN encoder stays fp32
        assert "quantized" in type(q.encoder.rnn).__module__
    assert all(isinstance(layer[0], Int8Matrix) for layer in stepper.weights)
    assert isinstance(stepper.out, Int8Matrix)
    assert (stepper.combine is None) == (attention == "none")
    assert (got - ref).exp().sub(1).abs().max() < 0.1  # probabilities within 10 % relative
    # where int8 prefers another token, fp32 found the two all but tied
    chosen = ref.gather(-1, got.argmax(-1, keepdim=True)).squeeze(-1)
    assert (ref.max(-1).values - chosen).max() < 0.01
    # the original model is left untouched (the quantized one is a copy)
    assert isinstance(model.decoder.out, torch.nn.Linear)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_int8_search_runs_greedy_and_beam(cell):
    fp32 = tiny_model(cell, "luong_general", seed=2)
    model, stepper = quantize_int8(fp32), int8_stepper(fp32)
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


@pytest.mark.parametrize("kind", ["onednn", "fbgemm"])
@pytest.mark.parametrize("rows", [1, 5, 64])
def test_int8_matrix_multiplies_like_linear(kind, rows):
    """Both int8 kernels compute x @ W.T + b to within int8's resolution, for any batch, a
    batch of zeros and inputs of more dimensions."""
    from rnnseq.inference import quantize

    if kind == "onednn" and not quantize.onednn_int8_available():
        pytest.skip("this CPU has no VNNI/AMX int8 instructions (or no oneDNN int8 op)")
    impl = {"onednn": quantize._OnednnInt8, "fbgemm": quantize._FbgemmInt8}[kind]
    torch.manual_seed(rows)
    w, b = torch.randn(40, 24), torch.randn(40)
    x = torch.randn(rows, 24)
    ref = torch.nn.functional.linear(x, w, b)
    got = impl(w, b)(x)
    assert got.dtype == torch.float32 and got.shape == (rows, 40)
    assert (got - ref).abs().max() < 0.03 * ref.abs().max()
    assert torch.allclose(impl(w, None)(torch.zeros(rows, 24)), torch.zeros(rows, 40))
    m = Int8Matrix(w, b)
    assert m(x[None]).shape == (1, rows, 40)


def test_int8_uses_onednn_only_with_int8_dot_products(monkeypatch):
    from rnnseq.inference import quantize

    monkeypatch.setattr(quantize, "_cpu_has_int8_dot_product", lambda: False)
    quantize.onednn_int8_available.cache_clear()
    try:
        assert not quantize.onednn_int8_available()
        assert isinstance(Int8Matrix(torch.randn(4, 3)).impl, quantize._FbgemmInt8)
    finally:
        quantize.onednn_int8_available.cache_clear()
