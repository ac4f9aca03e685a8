"""Numerical properties of encoder, attention and decoder, for every cell and attention type."""

import pytest
import torch

from rnnseq.data.batching import collate
from rnnseq.training.loss import sequence_loss

from .conftest import tiny_config, tiny_model, variants

SRC = [[4, 5, 6, 7, 8], [9, 10], [11]]
TGT = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]


def batch():
    return collate(SRC, TGT, list(range(len(SRC))))


@pytest.mark.parametrize("cell, attention, feed", variants())
def test_encoder_padding_invariance(cell, attention, feed):
    model = tiny_model(cell, attention, feed)
    b = batch()
    enc = model.encode(b.src, b.src_lengths)
    for row, seq in enumerate(SRC):
        alone = collate([seq], None, [0])
        one = model.encode(alone.src, alone.src_lengths)
        n = len(seq)
        torch.testing.assert_close(enc.memory[row, :n], one.memory[0, :n])
        assert torch.all(enc.memory[row, n:] == 0)
        assert enc.mask[row].sum() == n
        states = enc.state if isinstance(enc.state, tuple) else (enc.state,)
        single = one.state if isinstance(one.state, tuple) else (one.state,)
        for s, t in zip(states, single, strict=True):
            torch.testing.assert_close(s[:, row], t[:, 0])


@pytest.mark.parametrize("cell, attention, feed", variants())
def test_decoder_padding_invariance(cell, attention, feed):
    """A sentence's logits are the same alone or next to longer sentences."""
    model = tiny_model(cell, attention, feed)
    b = batch()
    logits = model(b.src, b.src_lengths, b.tgt_in)
    for row, (s, t) in enumerate(zip(SRC, TGT, strict=True)):
        one = collate([s], [t], [0])
        single = model(one.src, one.src_lengths, one.tgt_in)
        torch.testing.assert_close(logits[row, : len(t) + 1], single[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell, attention, feed", variants())
def test_forward_agrees_with_step(cell, attention, feed):
    model = tiny_model(cell, attention, feed)
    b = batch()
    enc = model.encode(b.src, b.src_lengths)
    logits = model.decoder(b.tgt_in, enc)
    state = model.init_state(enc)
    for t in range(b.tgt_in.shape[1]):
        log_probs, state, _ = model.decoder.step(b.tgt_in[:, t], state)
        torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell, attention, feed", [v for v in variants() if v[1] != "none"])
def test_attention_weights_sum_to_one_and_ignore_padding(cell, attention, feed):
    model = tiny_model(cell, attention, feed)
    b = batch()
    enc = model.encode(b.src, b.src_lengths)
    weights = model.decoder.features(b.tgt_in, model.init_state(enc)).attention
    assert weights.shape == (3, b.tgt_in.shape[1], b.src.shape[1])
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    pad = ~enc.mask[:, None, :].expand_as(weights)
    assert torch.all(weights[pad] == 0)


def test_empty_source_is_handled():
    model = tiny_model("lstm", "luong_general")
    b = collate([[], [4, 5]], [[5], [6]], [0, 1])
    logits = model(b.src, b.src_lengths, b.tgt_in)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("cell, attention, feed", variants())
def test_gradients_reach_every_parameter(cell, attention, feed):
    model = tiny_model(cell, attention, feed, bridge="linear").train()
    b = batch()
    loss, _, n = sequence_loss(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, 0.1)
    (loss / n).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def _grads(model, monkeypatch, defer: bool, precision: str = "fp32"):
    from rnnseq.model.cells import SteppedRNN
    from rnnseq.precision import autocast

    original = SteppedRNN.weights

    def weights(self, dtype=None, pack=None, defer_grad=False):
        return original(self, dtype, pack, defer_grad and defer)

    monkeypatch.setattr(SteppedRNN, "weights", weights)
    model.zero_grad()
    b = batch()
    with autocast(torch.device("cpu"), precision):
        loss, _, n = sequence_loss(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, 0.1)
    (loss / n).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("cell, attention, feed", [v for v in variants() if v[2] or
                                                   v[1] == "bahdanau"])
def test_deferred_step_weight_gradients_equal_autograd(cell, attention, feed, monkeypatch):
    """The stepped decoder's weight gradients, summed over all steps in one multiply, equal
    what autograd accumulates step by step (fp32), and stay close under bf16 autocast."""
    model = tiny_model(cell, attention, feed, dropout=0.0).train()
    plain = _grads(model, monkeypatch, defer=False)
    fast = _grads(model, monkeypatch, defer=True)
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)
    plain16 = _grads(model, monkeypatch, defer=False, precision="bf16")
    fast16 = _grads(model, monkeypatch, defer=True, precision="bf16")
    for name in plain16:
        scale = plain16[name].abs().max().item() + 1e-6
        assert (fast16[name] - plain16[name]).abs().max().item() < 0.05 * scale, name


def test_tied_and_shared_embeddings():
    model = tiny_model("lstm", "luong_general", vocab=(20, 20), embedding_size=16,
                       tie_embeddings=True)
    assert model.decoder.out.weight is model.decoder.embedding.weight
    from rnnseq.config import Config
    from rnnseq.model.seq2seq import Seq2Seq

    config = Config.from_dict({"data": {"shared_vocab": True},
                               "model": {"share_embeddings": True, "hidden_size": 16,
                                         "embedding_size": 16, "tie_embeddings": True}})
    shared = Seq2Seq(config, 20, 20)
    assert shared.encoder.embedding is shared.decoder.embedding
    n_unique = sum(p.numel() for p in shared.parameters())
    assert shared.num_parameters() == n_unique


def test_label_smoothing_loss_matches_definition():
    from rnnseq.training.loss import label_smoothed_nll

    logits = torch.randn(5, 7)
    target = torch.tensor([0, 3, 6, 2, 1])
    loss, nll = label_smoothed_nll(torch.log_softmax(logits, -1), target, 0.1)
    ref = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(nll, torch.nn.functional.cross_entropy(logits, target,
                                                                      reduction="sum"))


def test_dropout_rates_go_where_their_keys_say():
    model = tiny_model("lstm", "luong_general", True, dropout=0.3, embedding_dropout=0.1,
                       output_dropout=0.5)
    for part in (model.encoder, model.decoder):
        assert part.embedding_dropout.p == 0.1
        assert part.output_dropout.p == 0.5
        assert part.rnn.dropout == 0.3  # between layers: model.dropout, as rnn_dropout is null
    cfg = tiny_config(rnn_dropout=0.0)
    assert [cfg.model.dropout_rate(w) for w in ("embedding", "rnn", "output")] == [0.0] * 3


def test_dropout_rates_are_validated():
    from rnnseq.config import Config, ConfigError

    with pytest.raises(ConfigError, match="model.output_dropout must be below 1"):
        Config.from_dict({"model": {"output_dropout": 1.0}})
    with pytest.raises(ConfigError, match="model.rnn_dropout must be >= 0.0"):
        Config.from_dict({"model": {"rnn_dropout": -0.1}})


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_masked_recurrence_equals_the_packed_rnn(cell, bidirectional):
    """Training's stepped encoder computes what nn.LSTM/GRU/RNN computes over packed sequences
    (outputs, zeros at padding, final states), and so do their gradients; rows may be empty."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from rnnseq.model.encoder import masked_recurrence
    from rnnseq.model.rnn import make_rnn

    torch.manual_seed(0)
    rnn = make_rnn(cell, 6, 5, 2, 0.0, bidirectional)
    lengths = torch.tensor([7, 3, 0, 5, 1])
    x = torch.randn(5, 7, 6, requires_grad=True)
    mask = torch.arange(7)[None, :] < lengths[:, None]
    packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True,
                                  enforce_sorted=False)
    ref_out, ref_state = rnn(packed)
    ref_out, _ = pad_packed_sequence(ref_out, batch_first=True, total_length=7)
    out, state = masked_recurrence(rnn, x, lengths, mask)
    real = lengths > 0  # the packed reference cannot hold an empty row; it reads one token
    torch.testing.assert_close(out[real], ref_out[real])
    assert torch.all(out[~mask] == 0) and torch.all(out[2] == 0)
    states = state if isinstance(state, tuple) else (state,)
    ref_states = ref_state if isinstance(ref_state, tuple) else (ref_state,)
    for s, r in zip(states, ref_states, strict=True):
        torch.testing.assert_close(s[:, real], r[:, real])
        assert torch.all(s[:, 2] == 0)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out[real] * weights[real]).sum() + states[0][:, real].sum(),
                                [x, *rnn.parameters()])
    ref_grads = torch.autograd.grad((ref_out[real] * weights[real]).sum()
                                    + ref_states[0][:, real].sum(), [x, *rnn.parameters()])
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_training_encoder_steps_long_sources_and_matches_decoding(cell, monkeypatch):
    """From MASKED_FROM tokens (rows of different lengths) training's encoder steps with masks;
    it gives what decoding's packed encoder gives."""
    from rnnseq.model import encoder as encoder_module

    model = tiny_model(cell, "luong_general", False, dropout=0.0)
    b = batch()
    with torch.no_grad():
        packed = model.encode(b.src, b.src_lengths)
    calls = []
    original = encoder_module.masked_recurrence
    monkeypatch.setattr(encoder_module, "masked_recurrence",
                        lambda *a: calls.append(1) or original(*a))
    model.encode(b.src, b.src_lengths)
    assert not calls  # 5 tokens: below MASKED_FROM, the packed module runs
    monkeypatch.setattr(encoder_module, "MASKED_FROM", 2)
    stepped = model.encode(b.src, b.src_lengths)
    assert calls
    torch.testing.assert_close(stepped.memory, packed.memory)
    for s, p in zip(stepped.state if isinstance(stepped.state, tuple) else (stepped.state,),
                    packed.state if isinstance(packed.state, tuple) else (packed.state,),
                    strict=True):
        torch.testing.assert_close(s, p)
