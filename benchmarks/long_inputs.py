"""Long sources: time and peak memory of training steps and decoding as the source grows.

    python benchmarks/long_inputs.py [--lengths 125 250 500 1000] [--batch 16]

The model is the SciTLDR recipe's (copy attention; add ``--coverage`` for coverage) with random
weights and a 9,000-word vocabulary; sources are random token ids, the longest of the given
length and the others between half of it and it (as in a length-bucketed batch), targets 25
tokens. Each measurement runs in its own process, so its peak RSS is its own: "train" is
five training steps (forward, backward, Adam) at batch ``--batch``; "encoder" is the encoder's
forward and backward alone, stepped with masks (``masked_recurrence``, what training uses from
``MASKED_FROM`` tokens) or run as the packed ``nn.LSTM`` (whose CPU backward is quadratic in
the length when the rows' lengths differ); "beam 4" decodes ``--batch`` sources with beam 4
up to 25 tokens. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VOCAB, TARGET = 9000, 25


def model_and_batch(length: int, batch: int, coverage: bool):
    import torch

    from rnnseq.config import Config
    from rnnseq.data.batching import collate
    from rnnseq.model.seq2seq import Seq2Seq

    torch.manual_seed(0)
    config = Config.from_dict({"model": {
        "cell": "lstm", "layers": 1, "hidden_size": 256, "embedding_size": 128,
        "attention": "luong_general", "input_feeding": True, "copy_attention": True,
        "coverage": coverage, "dropout": 0.3}})
    model = Seq2Seq(config, VOCAB, VOCAB)
    g = torch.Generator().manual_seed(1)
    lengths = [length] + torch.randint(length // 2, length + 1, (batch - 1,), generator=g).tolist()
    src = [torch.randint(4, VOCAB, (n,), generator=g).tolist() for n in lengths]
    tgt = torch.randint(4, VOCAB, (batch, TARGET), generator=g).tolist()
    return model, collate(src, tgt, list(range(batch)), src, tgt)


def measure(phase: str, length: int, batch: int, coverage: bool) -> dict:
    import torch

    from rnnseq.inference.search import beam_search
    from rnnseq.training.loss import sequence_loss

    torch.set_num_threads(2)
    model, b = model_and_batch(length, batch, coverage)
    if phase == "train":
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for _ in range(6):
            start = time.perf_counter()
            loss, _, n = sequence_loss(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, 0.1,
                                       b.src_map, 1.0)
            (loss / n).backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - start)
        seconds = sorted(times[1:])[2]  # the median of five, after a warm-up step
    elif phase in ("encoder-masked", "encoder-packed"):
        from torch.nn.utils.rnn import pack_padded_sequence

        emb = model.encoder.embedding(b.src).detach().requires_grad_()
        times = []
        for _ in range(4):
            start = time.perf_counter()
            if phase == "encoder-masked":
                from rnnseq.model.encoder import masked_recurrence

                mask = torch.arange(length)[None, :] < b.src_lengths[:, None]
                out, _ = masked_recurrence(model.encoder.rnn, emb, b.src_lengths, mask)
            else:
                packed = pack_padded_sequence(emb, b.src_lengths, batch_first=True,
                                              enforce_sorted=False)
                out = model.encoder.rnn(packed)[0].data
            out.sum().backward()
            times.append(time.perf_counter() - start)
        seconds = sorted(times[1:])[1]
    else:
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            state = model.init_state(model.encode(b.src, b.src_lengths), b.src_map)
            beam_search(model.decoder, state, [TARGET] * batch, 4)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    return {"seconds": seconds, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[125, 250, 500, 1000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("PHASE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = measure(args.one[0], int(args.one[1]), args.batch, args.coverage)
        print(json.dumps(result))
        return
    phases = ["train", "encoder-masked", "encoder-packed", "beam4"]
    print(f"batch {args.batch}, target {TARGET} tokens, copy attention"
          f"{' + coverage' if args.coverage else ''}; seconds (peak RSS MiB)\n")
    print("| source tokens | " + " | ".join(phases) + " |")
    print("| ---: |" + " ---: |" * len(phases))
    for length in args.lengths:
        cells = []
        for phase in phases:
            cmd = [sys.executable, __file__, "--one", phase, str(length), "--batch",
                   str(args.batch)] + (["--coverage"] if args.coverage else [])
            out = json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                            check=True).stdout)
            cells.append(f"{out['seconds']:.2f} s ({out['peak_mib']:.0f})")
        print(f"| {length} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
