"""ONNX export (``rnnseq export``) and the torch-free runtime: every model variant gives the
PyTorch model's outputs and scores, nothing on the runtime path imports torch, and whatever
cannot work is refused with a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rnnseq.cli import main
from rnnseq.errors import ModelDirError, UsageError
from rnnseq.inference.translator import load
from rnnseq.modeldir import save_model_dir

from .conftest import serve_in_process, variants
from .test_ensemble import bundle

pytest.importorskip("onnxruntime")
from rnnseq.export.onnx import export_model  # noqa: E402 - needs onnx beside torch

SENTENCES = ["Ein Mann fährt Fahrrad.", "Die Sonne.", "Zwei Hunde spielen im Schnee im Park.",
             "", "Kinder Kinder Kinder spielen auf der Straße mit einem Hut."]
WORDS = {"src_tokenizer": "word", "tgt_tokenizer": "word"}
EXTRA = [  # beyond the cell x attention x input feeding grid
    {"bridge": "zero"}, {"bridge": "copy"}, {"bidirectional": False, "layers": 1},
    {"copy_attention": True}, {"coverage": True, "attention": "bahdanau"},
    {"copy_attention": True, "coverage": True, "cell": "gru", "input_feeding": False},
]


def exported(tmp_path: Path, seed: int = 0, **model) -> tuple[Path, Path]:
    """A random model saved as a model directory, and its export. Its output layer is scaled
    up (a random model's flat distributions make outputs that repeat a word, where many
    hypotheses tie to the last digits and either rounding may win) and its biases are not 0."""
    made = bundle(seed, data=WORDS, **{"layers": 2, **model})
    made.config.decode.max_length = 20  # random models repeat a word up to the limit
    with torch.no_grad():
        made.model.decoder.out.weight.mul_(6.0)
        for name, tensor in made.model.named_parameters():  # initialised to 0; not in use
            if name.endswith("bias"):
                tensor.uniform_(-0.5, 0.5)
    save_model_dir(tmp_path / "model", made)
    return tmp_path / "model", export_model(tmp_path / "model", tmp_path / "onnx")


def assert_same(torch_results, onnx_results) -> None:
    """The same n-best lists, scores within 1e-4 (where two hypotheses' scores differ by less
    than 5e-5, rounding may pick either one)."""
    close = lambda x, y: abs(x - y) < 1e-4  # noqa: E731
    for mine, theirs in zip(torch_results, onnx_results, strict=True):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            assert close(a.score, b.score) and close(a.log_prob, b.log_prob)
            if a.tokens != b.tokens:
                tie = [h.tokens for h in mine if abs(h.score - b.score) < 5e-5]
                assert b.tokens in tie or abs(a.score - b.score) < 5e-5


def model_kwargs(cell, attention, feed) -> dict:
    return {"cell": cell, "attention": attention, "input_feeding": feed}


@pytest.mark.parametrize("model", [model_kwargs(*v) for v in variants()] + EXTRA,
                         ids=lambda m: "-".join(f"{k}={v}" for k, v in m.items()))
def test_every_variant_translates_as_the_torch_model(tmp_path, model):
    model_dir, onnx_dir = exported(tmp_path, **model)
    reference, runtime = load(str(model_dir)), load(str(onnx_dir))
    for beam in (1, 4):
        options = dict(beam_size=beam, n_best=beam, return_attention=True)
        mine = reference.translate_nbest(SENTENCES, **options)
        theirs = runtime.translate_nbest(SENTENCES, **options)
        assert_same(mine, theirs)
        if model.get("attention", "bahdanau") != "none":
            best = [r[0] for r in mine], [r[0] for r in theirs]
            for a, b in zip(*best, strict=True):
                if a.attention:
                    assert max(abs(x - y) for ra, rb in zip(a.attention, b.attention, strict=True)
                               for x, y in zip(ra, rb, strict=True)) < 1e-4


def test_decoding_options_match(tmp_path):
    """Length penalty, the rules, prefixes and batch size reach the exported model alike."""
    model_dir, onnx_dir = exported(tmp_path, seed=3, cell="lstm", attention="luong_general",
                                   input_feeding=True)
    reference, runtime = load(str(model_dir)), load(str(onnx_dir))
    options = dict(beam_size=3, n_best=2, length_penalty=0.8, min_length=3,
                   block_ngram_repeat=2, coverage_penalty=0.2, batch_size=2,
                   prefixes=["", "der", "", "Kinder der", ""])
    assert_same(reference.translate_nbest(SENTENCES, **options),
                runtime.translate_nbest(SENTENCES, **options))
    assert runtime.translate(SENTENCES[:2]) == reference.translate(SENTENCES[:2])
    # several batches at once (decode.workers) through onnxruntime: the same outputs
    assert_same(reference.translate_nbest(SENTENCES, **options),
                runtime.translate_nbest(SENTENCES, workers=3, **options))


@pytest.mark.parametrize("model", [{}, {"copy_attention": True, "coverage": True}])
def test_scores_of_given_targets_match(tmp_path, model):
    model_dir, onnx_dir = exported(tmp_path, **model)
    targets = ["der Mann", "", "Kinder spielen im Schnee", "Die", "Hut. Hut. der"]
    mine = load(str(model_dir)).score(SENTENCES, targets, batch_size=2)
    theirs = load(str(onnx_dir)).score(SENTENCES, targets, batch_size=2)
    assert theirs == pytest.approx(mine, abs=1e-4)


def test_the_export_records_what_it_holds(tmp_path):
    model_dir, onnx_dir = exported(tmp_path, cell="gru", copy_attention=True)
    manifest = json.loads((onnx_dir / "export.json").read_text())
    assert manifest["format"] == "rnnseq-onnx" and manifest["opset"] >= 16
    assert set(manifest["versions"]) == {"rnnseq", "torch", "onnx"}
    assert manifest["state"] == ["h"] and manifest["copy"] is True
    assert {p.name for p in onnx_dir.iterdir()} >= {"config.yaml", "src_vocab.json",
                                                     "tgt_vocab.json", "encoder.onnx",
                                                     "step.onnx", "export.json"}
    assert not (onnx_dir / "model.safetensors").exists()
    assert load(str(onnx_dir)).num_parameters == load(str(model_dir)).num_parameters


def test_sentencepiece_models_travel_with_the_export(tmp_path):
    save_model_dir(tmp_path / "model", bundle(data={"src_tokenizer": "char"}))
    export_model(tmp_path / "model", tmp_path / "onnx")
    assert load(str(tmp_path / "onnx")).translate(["Ein Hut."]) == \
        load(str(tmp_path / "model")).translate(["Ein Hut."])


@pytest.mark.parametrize("model", [{}, {"cell": "gru", "attention": "bahdanau",
                                       "copy_attention": True}])
def test_int8_export_stays_close_to_fp32(tmp_path, model):
    model_dir, fp32_dir = exported(tmp_path, **model)
    export_model(model_dir, tmp_path / "int8", quantize="int8")
    import onnx

    ops = [node.op_type for node in onnx.load(str(tmp_path / "int8" / "step.onnx")).graph.node]
    assert "MatMulInteger" in ops and "Gemm" not in ops  # the weights' multiplies are int8
    assert ops.count("MatMul") >= 2  # attention's multiplies of two activations are not
    fp32, int8 = load(str(fp32_dir)), load(str(tmp_path / "int8"))
    assert int8.quantize == "int8"
    outputs = int8.translate_nbest(SENTENCES, beam_size=3, n_best=3)
    assert all(len(r) == 3 and r[0].score >= r[-1].score for r in outputs)
    targets = fp32.translate(SENTENCES, beam_size=1)
    for a, b in zip(fp32.score(SENTENCES, targets), int8.score(SENTENCES, targets),
                    strict=True):
        assert abs(a - b) <= 0.05 * abs(a) + 0.05


def test_cli_export_and_translate(tmp_path, capsys):
    save_model_dir(tmp_path / "model", bundle(data=WORDS))
    assert main(["export", str(tmp_path / "model"), "-o", str(tmp_path / "onnx")]) == 0
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    outputs = []
    for model in ("model", "onnx"):
        out = tmp_path / f"{model}.out"
        assert main(["translate", str(tmp_path / model), "-i", str(tmp_path / "in.txt"),
                     "-o", str(out), "--beam", "3", "--n-best", "2", "--scores"]) == 0
        outputs.append(out.read_text(encoding="utf-8").splitlines())
    assert len(outputs[0]) == len(outputs[1]) == 2 * len(SENTENCES)
    for mine, theirs in zip(*outputs, strict=True):  # (random models make near ties)
        assert abs(float(mine.split("\t")[1]) - float(theirs.split("\t")[1])) < 2e-4
    assert main(["export", str(tmp_path / "model"), "-o", str(tmp_path / "onnx")]) == 2
    assert "not empty" in capsys.readouterr().err


BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def test_the_runtime_path_never_imports_torch(tmp_path):
    save_model_dir(tmp_path / "model", bundle(data=WORDS, copy_attention=True))
    export_model(tmp_path / "model", tmp_path / "onnx")
    expected = load(str(tmp_path / "model")).translate(SENTENCES, beam_size=3)
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    script = BLOCK_TORCH + textwrap.dedent(f"""
        import json, rnnseq
        from rnnseq.cli import main
        print(json.dumps(rnnseq.load({str(tmp_path / 'onnx')!r}).translate(
            {SENTENCES!r}, beam_size=3)))
        code = main(["translate", {str(tmp_path / 'onnx')!r}, "-i", {str(tmp_path / 'in.txt')!r},
                     "-o", {str(tmp_path / 'out.txt')!r}, "--beam", "3"])
        assert code == 0, code
        assert "torch" not in sys.modules
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("the block did not hold")
        """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0]) == expected
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines() == expected


@pytest.fixture
def onnx_dir(tmp_path) -> Path:
    return exported(tmp_path)[1]


@pytest.mark.parametrize("options, message", [
    ({"precision": "bf16"}, "computes in fp32"),
    ({"device": "cuda"}, "runs on the CPU"),
    ({"quantize": "int8"}, "chosen at export"),
])
def test_loading_options_an_export_cannot_take(onnx_dir, options, message):
    with pytest.raises(UsageError, match=message):
        load(str(onnx_dir), **options)


def test_what_the_runtime_refuses(onnx_dir, tmp_path):
    from rnnseq.inference.sampling import Sampling

    runtime = load(str(onnx_dir))
    with pytest.raises(UsageError, match="sampling"):
        runtime.translate_nbest(["Ein Hut."], sampling=Sampling())
    with pytest.raises(UsageError, match="ensemble"):
        load([str(onnx_dir), str(tmp_path / "model")])


def test_exporting_refuses_a_non_empty_directory_and_a_bad_quantization(tmp_path):
    save_model_dir(tmp_path / "model", bundle(data=WORDS))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        export_model(tmp_path / "model", tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="int8"):
        export_model(tmp_path / "model", tmp_path / "x", quantize="int4")


def tamper_missing_graph(d: Path) -> None:
    (d / "step.onnx").unlink()


def tamper_vocabulary(d: Path) -> None:
    vocab = json.loads((d / "tgt_vocab.json").read_text())
    key = "itos" if isinstance(vocab, dict) and "itos" in vocab else None
    if key:
        vocab[key].append("extra")
    else:
        vocab.append("extra")
    (d / "tgt_vocab.json").write_text(json.dumps(vocab))


def tamper_graph_bytes(d: Path) -> None:
    (d / "encoder.onnx").write_bytes(b"not a graph")


def tamper_manifest(d: Path) -> None:
    (d / "export.json").write_text(json.dumps({"format": "something else"}))


@pytest.mark.parametrize("tamper, message", [
    (tamper_missing_graph, "step.onnx: missing"),
    (tamper_vocabulary, "tgt_vocab.json: .* entries, but the graphs were exported for"),
    (tamper_graph_bytes, "encoder.onnx: onnxruntime cannot load it"),
    (tamper_manifest, "not an rnnseq export manifest"),
])
def test_a_tampered_export_is_refused_with_a_message(onnx_dir, tamper, message):
    tamper(onnx_dir)
    with pytest.raises(ModelDirError, match=message):
        load(str(onnx_dir))


def test_serve_serves_an_export(onnx_dir):
    pytest.importorskip("fastapi")
    translator = load(str(onnx_dir))

    async def requests(http):
        info = (await http.get("/v1/models")).json()["models"][0]
        return info, (await http.post("/v1/translate", json={
            "text": SENTENCES, "beam_size": 3, "return_attention": True})).json()

    info, out = serve_in_process({"onnx": translator}, requests)
    assert info["model"]["parameters"] == translator.num_parameters > 0
    assert [t["text"] for t in out["translations"]] == translator.translate(SENTENCES,
                                                                            beam_size=3)
    assert out["translations"][0]["attention"]


def test_int8_quantizes_weights_only():
    """The two traps of onnxruntime's dynamic quantization (rnnseq.export.int8): an empty
    multiply (the recurrent step's bias comes from a 0-wide input) and a multiply of two
    activations stay fp32; a Gemm by a weight becomes an int8 MatMul."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rnnseq.export.int8 import quantize_graph

    rng = np.random.default_rng(0)
    weights = {"empty_input": np.zeros((1, 0), np.float32), "empty": np.zeros((16, 0), np.float32),
               "bias": rng.uniform(-1, 1, 16).astype(np.float32),
               "w": rng.uniform(-1, 1, (16, 32)).astype(np.float32)}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["empty_input", "empty", "bias"], ["b"], transB=1),
         helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1),
         helper.make_node("Transpose", ["y"], ["yt"]),
         helper.make_node("MatMul", ["y", "yt"], ["scores"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "scores")],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    tmp = Path(pytest.importorskip("tempfile").mkdtemp())
    onnx.save(model, str(tmp / "fp32.onnx"))
    quantize_graph(tmp / "fp32.onnx", tmp / "int8.onnx")
    nodes = onnx.load(str(tmp / "int8.onnx")).graph.node
    ops = [n.op_type for n in nodes]
    assert ops.count("MatMulInteger") == 1
    assert any(n.op_type == "MatMul" and set(n.input) == {"y", "yt"} for n in nodes)
    x = rng.uniform(-1, 1, (4, 32)).astype(np.float32)
    run = lambda name: ort.InferenceSession(str(tmp / name)).run(None, {"x": x})  # noqa: E731
    (y32, s32), (y8, s8) = run("fp32.onnx"), run("int8.onnx")
    assert np.abs(y8 - y32).max() < 0.05 * np.abs(y32).max()
    assert np.abs(s8 - s32).max() < 0.05 * np.abs(s32).max()
