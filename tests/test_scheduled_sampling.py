"""Scheduled sampling: the schedules, teacher forcing at ε = 0, only predictions at ε = 1."""

import pytest
import torch

from rnnseq.config import Config, ConfigError
from rnnseq.data.batching import collate
from rnnseq.data.vocab import BOS_ID, EOS_ID, PAD_ID
from rnnseq.model.decoder import ScheduledInputs
from rnnseq.training.scheduled_sampling import sampling_rate, scheduled_inputs

from .conftest import tiny_model, variants

SRC = [[4, 5, 6, 7], [8, 9], [5, 5, 5, 10, 11]]
TGT = [[4, 5, 6], [7, 8, 9, 10, 11], [12]]


def train_config(kind, **extra):
    return Config.from_dict({"train": {
        "scheduled_sampling": kind, "scheduled_sampling_max": 0.4,
        "scheduled_sampling_steps": 1000, "scheduled_sampling_warmup": 100, **extra}}).train


@pytest.mark.parametrize("kind", ["linear", "exponential", "inverse_sigmoid"])
def test_the_schedules_rise_from_zero_after_the_warmup_to_the_max(kind):
    t = train_config(kind)
    rates = [sampling_rate(t, step) for step in range(0, 3000, 10)]
    assert all(r == 0.0 for r in rates[:11])  # the warm-up: pure teacher forcing
    assert rates == sorted(rates) and max(rates) <= 0.4 and rates[-1] > 0.39
    middle = sampling_rate(t, 600)
    assert middle == pytest.approx({"linear": 0.2, "exponential": 0.4 * 0.9,
                                    "inverse_sigmoid": 0.2}[kind], abs=1e-9)
    assert sampling_rate(train_config("none"), 5000) == 0.0
    with pytest.raises(ConfigError, match="scheduled_sampling_max must be at most 1"):
        sampling_rate(train_config(kind, scheduled_sampling_max=1.5), 500)


def test_replacements_skip_bos_and_padding_and_follow_the_rate():
    torch.manual_seed(0)
    tgt_in = collate([[4]] * 600, TGT * 200, list(range(600))).tgt_in
    s = scheduled_inputs(tgt_in, 0.3, "sample")
    assert not s.replace[:, 0].any() and not s.replace[tgt_in == PAD_ID].any()
    real = (tgt_in != PAD_ID)
    real[:, 0] = False
    assert s.replace.sum() / real.sum() == pytest.approx(0.3, abs=0.03)
    assert s.noise.shape == tgt_in.shape
    assert scheduled_inputs(tgt_in, 0.0, "argmax") is None
    assert scheduled_inputs(tgt_in, 0.5, "argmax").noise is None


def batch():
    return collate(SRC, TGT, [0, 1, 2])


@pytest.mark.parametrize("cell, attention, feed", variants())
def test_nothing_replaced_is_teacher_forcing(cell, attention, feed):
    model = tiny_model(cell, attention, feed, seed=3)
    b = batch()
    state = model.init_state(model.encode(b.src, b.src_lengths))
    plain = model.decoder.features(b.tgt_in, state)
    none = ScheduledInputs(torch.zeros_like(b.tgt_in, dtype=torch.bool))
    scheduled = model.decoder.features(b.tgt_in, state, none)
    stepped = feed or attention == "bahdanau"
    if stepped:  # the same stepped code with the same inputs: bit for bit
        assert torch.equal(plain.vectors, scheduled.vectors)
    else:  # the batched RNN call against the stepper
        assert torch.allclose(plain.vectors, scheduled.vectors, atol=1e-6)


@pytest.mark.parametrize("cell, attention, feed", variants() + [
    ("lstm", "luong_general", "copy")])
def test_all_replaced_feeds_only_the_models_predictions(cell, attention, feed):
    extra = {"copy_attention": True} if feed == "copy" else {}
    model = tiny_model(cell, attention, None if feed == "copy" else feed, seed=4, **extra)
    b = batch()
    src_map = b.src if feed == "copy" else None  # every source id maps to itself
    all_rows = torch.ones_like(b.tgt_in, dtype=torch.bool)
    all_rows[:, 0] = False
    state = model.init_state(model.encode(b.src, b.src_lengths),
                             None if src_map is None else src_map)
    out = model.decoder.features(b.tgt_in, state, ScheduledInputs(all_rows))
    got = model.decoder.log_probs(out, state)
    # the same by stepping: each input is the previous step's best real token
    step_state = model.init_state(model.encode(b.src, b.src_lengths), src_map)
    prev = torch.full((3,), BOS_ID)
    for t in range(b.tgt_in.shape[1]):
        lp, step_state, _ = model.decoder.step(prev, step_state)
        assert torch.allclose(got[:, t], lp, atol=1e-5), t
        masked = lp.clone()
        masked[:, [PAD_ID, BOS_ID, EOS_ID]] = float("-inf")
        prev = masked.argmax(-1)
    # the reference tokens played no part after <s>
    other = b.tgt_in.clone()
    other[:, 1:] = 4
    again = model.decoder.features(other, state, ScheduledInputs(all_rows))
    assert torch.allclose(again.vectors, out.vectors, atol=1e-6)


def test_sampled_predictions_follow_the_noise():
    model = tiny_model("gru", "bahdanau", None, seed=5)
    b = batch()
    state = model.init_state(model.encode(b.src, b.src_lengths))
    rows = torch.ones_like(b.tgt_in, dtype=torch.bool)
    rows[:, 0] = False
    g = torch.Generator().manual_seed(1)
    noise = torch.rand(b.tgt_in.shape, generator=g)
    one = model.decoder.features(b.tgt_in, state, ScheduledInputs(rows, noise)).vectors
    two = model.decoder.features(b.tgt_in, state, ScheduledInputs(rows, noise)).vectors
    other = model.decoder.features(b.tgt_in, state, ScheduledInputs(rows, 1 - noise)).vectors
    assert torch.equal(one, two) and not torch.allclose(one, other)
