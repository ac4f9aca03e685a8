"""Data: reading and validating corpora, tokenizers, vocabularies, batching."""
