"""Export of model directories to forms that run without PyTorch (``rnnseq export``)."""
