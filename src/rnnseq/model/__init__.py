"""Model: encoder, attention, decoder and the Seq2Seq that ties them."""
