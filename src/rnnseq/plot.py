"""Attention heat maps as PNG files (``rnnseq translate --plot-attention DIR``; matplotlib)."""

from __future__ import annotations

import io
from pathlib import Path

from .errors import UsageError
from .fileio import atomic_write_bytes


def plot_attention(source_tokens: list[str], target_tokens: list[str],
                   attention: list[list[float]], path: Path) -> None:
    """Draw ``attention[i][j]`` (output step ``i`` on source token ``j``) with the source tokens
    along the x axis and the output tokens (and ``</s>`` when the output ended) down the y axis,
    and write it to ``path`` as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot-attention needs matplotlib: pip install 'rnnseq[plot]'") \
            from None
    rows = list(target_tokens) + ["</s>"] * (len(attention) - len(target_tokens))
    width = max(3.0, 0.45 * len(source_tokens) + 1.5)
    height = max(2.5, 0.4 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(min(width, 40), min(height, 40)), dpi=100)
    image = ax.imshow(attention, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), labels=source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
