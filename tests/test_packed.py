"""fp32 decoding with MKL-packed matrices (rnnseq.inference.packed) computes what the plain
matrices compute."""

import pytest
import torch
import torch.nn.functional as F

from rnnseq.inference.packed import MklMatrix, mkl_packing_available
from rnnseq.inference.search import beam_search, greedy_search, max_lengths

from .conftest import tiny_model, variants
from .test_quantize import step_log_probs
from .test_search import SRC, _src

pytestmark = pytest.mark.skipif(not mkl_packing_available(),
                                reason="this PyTorch build has no MKL packed GEMM")


@pytest.mark.parametrize("rows", [1, 7, 30, 64, 100])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_matrix_multiplies_like_linear(rows, bias):
    torch.manual_seed(rows)
    w, b = torch.randn(300, 96), torch.randn(300) if bias else None
    x = torch.randn(rows, 96)
    got = MklMatrix(w, b)(x)
    assert got.shape == (rows, 300) and got.dtype == torch.float32
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_packed_matrix_falls_back_for_other_inputs():
    w, b = torch.randn(12, 8), torch.randn(12)
    m = MklMatrix(w, b)
    x3 = torch.randn(2, 3, 8)
    torch.testing.assert_close(m(x3), F.linear(x3, w, b))
    xb = torch.randn(4, 8, dtype=torch.bfloat16)
    assert m(xb).dtype == torch.bfloat16
    # a non-contiguous batch (a column slice) multiplies like its contiguous copy
    wide = torch.randn(5, 16)
    torch.testing.assert_close(m(wide[:, :8]), F.linear(wide[:, :8], w, b))


@pytest.mark.parametrize("cell, attention, feed", variants())
def test_packed_decoding_follows_plain(cell, attention, feed):
    model = tiny_model(cell, attention, feed, seed=5, hidden_size=32, embedding_size=16).eval()
    with torch.no_grad():
        packed = model.decoder.inference_stepper(pack=MklMatrix)
        assert all(isinstance(layer[0], MklMatrix) for layer in packed.weights)
        assert isinstance(packed.out, MklMatrix)
        assert (packed.combine is None) == (attention == "none")
        torch.testing.assert_close(step_log_probs(model, stepper=packed), step_log_probs(model),
                                   rtol=1e-5, atol=1e-5)
        src, lengths = _src(SRC)
        limits = max_lengths(lengths, 2.0, 20)
        for search in (lambda s: greedy_search(model.decoder, s, limits),
                       lambda s: beam_search(model.decoder, s, limits, 3, n_best=2)):
            plain = search(model.init_state(model.encode(src, lengths)))
            fast = search(model.init_state(model.encode(src, lengths), stepper=packed))
            assert [[h.tokens for h in hs] for hs in fast] == [[h.tokens for h in hs]
                                                                for hs in plain]


def test_fp32_cpu_backend_decodes_with_packed_matrices():
    from rnnseq.inference.torch_backend import TorchBackend
    from rnnseq.modeldir import ModelBundle

    backend = TorchBackend(ModelBundle(None, tiny_model(), None, None, None, None))
    assert isinstance(backend.steppers[0].out, MklMatrix)
    bf16 = TorchBackend(ModelBundle(None, tiny_model(), None, None, None, None),
                        precision="bf16")
    assert bf16.steppers[0].out is None
    assert bf16.steppers[0].weights[0][0].dtype == torch.bfloat16
