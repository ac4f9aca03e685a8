"""``rnnseq serve``: models over HTTP, with batching across concurrent requests."""
