"""Translation without PyTorch: exported directories run with onnxruntime and numpy. Nothing
under this package imports torch."""
