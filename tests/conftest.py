"""Shared fixtures: tiny configs, models and corpora made on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnseq.config import ATTENTIONS, CELLS, Config  # the choices come from the config
from rnnseq.model.seq2seq import Seq2Seq

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def variants():
    """Every (cell, attention, input_feeding) combination the decoder supports."""
    out = []
    for cell in CELLS:
        for attention in ATTENTIONS:
            feeds = [True, False] if attention.startswith("luong") else [None]
            for feed in feeds:
                out.append((cell, attention, feed))
    return out


def tiny_config(**model) -> Config:
    raw = {"model": {"hidden_size": 16, "embedding_size": 8, "layers": 2, "dropout": 0.0,
                     **model}}
    return Config.from_dict(raw)


def tiny_model(cell="lstm", attention="luong_general", input_feeding=None, seed=0,
               vocab=(13, 17), **model) -> Seq2Seq:
    torch.manual_seed(seed)
    config = tiny_config(cell=cell, attention=attention, input_feeding=input_feeding, **model)
    return Seq2Seq(config, *vocab).eval()


# A small reversal task ("a b c" -> "c b a"), enough for a few real training steps.
REVERSAL_PAIRS = [(" ".join(w), " ".join(reversed(w))) for w in
                  ["abc", "bca", "cab", "aab", "bba", "cca", "acb", "bac", "abb", "cbc", "aca",
                   "bcb"]]


def write_tsv(path: Path, pairs) -> Path:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


@pytest.fixture
def toy_pairs():
    src = ["1 2 3", "4 5 6", "7 8 9"]
    tgt = ["2 4 6", "3 5 7", "1 6 9"]
    return list(zip(src, tgt, strict=True))


def serve_in_process(translators: dict, requests):
    """``await requests(http)`` against an app serving ``translators`` in this process (ASGI
    transport, the app's startup and shutdown around it); its result."""
    import asyncio

    import httpx

    from rnnseq.serve.app import create_app

    app = create_app(translators)

    async def call():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                return await requests(http)

    return asyncio.run(call())

