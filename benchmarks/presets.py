"""Benchmark presets: a model config, its data, and its matrix shapes for the FLOP count."""

from __future__ import annotations

PRESETS = {
    # The peers' reference preset (see ../shared/peers/): Multi30k de->en, lowercased and
    # punctuation-split, word vocabularies with min frequency 2.
    "multi30k-word-lstm": {
        "data": {"src_tokenizer": "word", "tgt_tokenizer": "word", "min_freq": 2,
                 "max_len": 100},
        "model": {"cell": "lstm", "layers": 2, "hidden_size": 512, "embedding_size": 256,
                  "bidirectional": True, "attention": "luong_general", "input_feeding": True,
                  "dropout": 0.3, "bridge": "copy"},
        "train": {"batch_size": 64, "batch_type": "sentences", "optimizer": "adam",
                  "lr": 0.001, "clip_norm": 5.0, "threads": 2, "progress": False},
        "decode": {"batch_size": 64, "beam_size": 5, "length_penalty": 0.0},
    },
}


def flops_per_target_token(preset: dict, src_per_tgt: float, src_len: float, vocab: int) -> dict:
    """Matrix-multiply FLOPs of one training step per target token (forward; backward ~2x).

    Counts the encoder (both directions, all layers), the decoder RNN, attention (scores and
    context against ``src_len`` source positions), the attentional combination and the output
    layer. Elementwise work is ignored: this is the ceiling's denominator, not a cost model.
    """
    m = preset["model"]
    e, h, layers = m["embedding_size"], m["hidden_size"], m["layers"]
    gates = 4 if m["cell"] == "lstm" else 3 if m["cell"] == "gru" else 1
    per_dir = h // 2 if m["bidirectional"] else h
    dirs = 2 if m["bidirectional"] else 1
    enc = 0.0
    for layer in range(layers):
        inp = e if layer == 0 else per_dir * dirs
        enc += dirs * 2 * gates * per_dir * (inp + per_dir)
    enc *= src_per_tgt  # encoder work is per source token
    feed = h if m.get("input_feeding") else 0
    dec = 0.0
    for layer in range(layers):
        inp = (e + feed) if layer == 0 else h
        dec += 2 * gates * h * (inp + h)
    attn = 2 * h * h * src_per_tgt + 2 * 2 * h * src_len  # keys (per source token) + scores/context
    combine = 2 * (2 * h) * h
    output = 2 * h * vocab
    forward = enc + dec + attn + combine + output
    return {"encoder": enc, "decoder_rnn": dec, "attention": attn, "combine": combine,
            "output": output, "forward": forward, "train": 3 * forward}
