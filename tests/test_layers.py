"""docs/design.md's dependency rule, checked on the source: imports point one way,
cli → training / inference → model → data (and the shared modules below them)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnseq"

# What each part may import from rnnseq (besides itself). Modules not named here are the
# application layer (cli, demo, average, the package root) and may import anything.
BASE = {"config", "errors", "fileio", "faults", "precision"}
ALLOWED = {
    "errors": set(),
    "faults": set(),
    "precision": {"config", "errors"},  # its choices are the config's Precision type
    "metrics": set(),
    "streaming": {"errors"},
    "fileio": {"errors"},
    "config": {"errors"},
    "arrays": set(),
    "data": BASE,
    "model": BASE | {"data.vocab", "arrays"},
    "modeldir": BASE | {"data", "model"},
    # the torch-free runtime: exported graphs, run by onnxruntime
    "runtime": BASE | {"data", "modeldir", "arrays"},
    "inference": BASE | {"data", "model", "modeldir", "arrays", "runtime"},
    "export": BASE | {"model", "modeldir", "runtime"},
    "training": BASE | {"data", "model", "modeldir", "inference", "metrics"},
    "serve": BASE | {"inference"},
}


def part_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def rnnseq_imports(path: Path) -> set[str]:
    """Absolute names (``rnnseq.x.y``) of the rnnseq modules ``path`` imports."""
    package = ["rnnseq", *path.relative_to(SRC).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module and node.module.split(".")[0] == "rnnseq":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rnnseq"}
    return found


def allows(allowed: set[str], target: str) -> bool:
    name = target.removeprefix("rnnseq.")
    return any(name == a or name.startswith(a + ".") for a in allowed)


def test_dependencies_point_one_way():
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        module = "rnnseq." + ".".join(path.relative_to(SRC).with_suffix("").parts)
        part = module.split(".")[1]
        if part not in ALLOWED:
            continue
        for target in rnnseq_imports(path):
            if part_of(target) == part or allows(ALLOWED[part], target):
                continue
            violations.append(f"{module} imports {target}")
    assert not violations, "imports against docs/design.md's rule:\n" + "\n".join(violations)


def test_the_checker_sees_relative_imports():
    imports = rnnseq_imports(SRC / "model" / "seq2seq.py")
    assert "rnnseq.config" in imports and "rnnseq.model.decoder" in imports
    assert not allows(ALLOWED["model"], "rnnseq.inference.quantize")
