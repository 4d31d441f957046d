"""The fuzzing harness of docs/reliability.md: malformed variants of every input edmem reads, fed
to the real command (``main(argv)``, in process) and checked against the contract.

The contract, for every run on a malformed input:

* success (exit 0) with complete outputs (they parse), or exit 1 with exactly ONE
  ``<prog>: error: ...`` line on stderr that names the malformed file (or its directory);
* never an exception escaping ``main`` (a traceback);
* never a half-written output (no edmem temp file left behind, results parse);
* never an existing output changed by a failed run (every file of the watched directory keeps its
  bytes; only the append-only logs ``*log.txt`` may grow).

One :class:`Target` per input kind: a seed file (a valid input), a format (how to mutate it) and
a runner (which command reads it). Adding an input kind = one more entry in :func:`targets`.
``tests/test_fuzz.py`` runs each target a bounded number of times in ``make test``;
``benchmarks/fuzz.py --minutes N`` runs them for as long as asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from hypothesis import strategies as st

import el_tiny

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EVAL = FIXTURES / "eval"
CORPUS = FIXTURES / "pretraining"
QUICK = ("--num_train_epochs", "1", "--eval_period", "2")


class ContractViolation(AssertionError):
    """A run broke the contract (the message says how, with the captured stderr)."""


# ---------------------------------------------------------------------------- mutations
JSON_LEAVES = st.one_of(
    # small ints (ids, offsets, sizes near the real ones) and extremes; no mid-range sizes that
    # would make a config allocate gigabytes before failing
    st.none(), st.booleans(), st.integers(min_value=-10, max_value=2100),
    st.sampled_from([2 ** 31, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 30]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", " ", "0", "-1", "1e400", "NaN", "\u0130", "<E_s>", "../x", "a b "]))
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)
BAD_BYTES = st.sampled_from([b"\xff", b"\xc3", b"\xe9", b"\x00", b"\xef\xbb\xbf", b"\n", b"\r",
                             b"{", b"}", b"[", b"]", b'"', b",", b":", b"-", b"1e999", b"\\u"])


def _paths(value: Any, prefix: tuple = (), limit: int = 400) -> list[tuple]:
    """Every path (keys / indices) into nested dicts and lists, breadth first, at most ``limit``."""
    found: list[tuple] = []
    queue = [(prefix, value)]
    while queue and len(found) < limit:
        path, node = queue.pop(0)
        found.append(path)
        if isinstance(node, dict):
            queue += [(path + (key,), child) for key, child in node.items()]
        elif isinstance(node, (list, tuple)):
            queue += [(path + (index,), child) for index, child in enumerate(node)]
    return found


def _set(root: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, tuple):
        return root  # tuples (inside torch states) are left alone
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return root


def mutate_tree(draw: Callable, root: Any, junk: st.SearchStrategy) -> Any:
    """One structural change: replace, delete, retype or duplicate a node of a parsed document."""
    path = draw(st.sampled_from(_paths(root)))
    node = root
    for key in path:
        node = node[key]
    op = draw(st.sampled_from(["replace", "delete", "wrap", "stringify", "negate", "empty", "add"]))
    if op == "replace" or (op == "delete" and not path):
        return _set(root, path, draw(junk))
    if op == "delete":
        return _set(root, path, None, delete=True)
    if op == "wrap":
        return _set(root, path, [node])
    if op == "stringify":
        return _set(root, path, str(node) if not isinstance(node, torch.Tensor) else "tensor")
    if op == "negate" and isinstance(node, (int, float)) and not isinstance(node, bool):
        return _set(root, path, -node - 1)
    if op == "empty":
        return _set(root, path, type(node)() if isinstance(node, (dict, list, str)) else None)
    if op == "add" and isinstance(node, dict):
        node[draw(st.text(max_size=8))] = draw(junk)
        return root
    if op == "add" and isinstance(node, list):
        node.insert(draw(st.integers(0, len(node))), draw(junk))
        return root
    return _set(root, path, draw(junk))


def mutate_bytes(draw: Callable, data: bytes) -> bytes:
    """One byte-level change: truncate, cut, insert bad bytes, duplicate, flip."""
    size = len(data)
    op = draw(st.sampled_from(["truncate", "cut", "insert", "duplicate", "flip", "empty"]))
    pos = draw(st.integers(0, size))
    if op == "truncate":
        return data[:pos]
    if op == "cut":
        return data[:pos] + data[min(size, pos + draw(st.integers(1, 64))):]
    if op == "insert":
        return data[:pos] + draw(BAD_BYTES) + data[pos:]
    if op == "duplicate":
        end = min(size, pos + draw(st.integers(1, 64)))
        return data[:end] + data[pos:end] + data[end:]
    if op == "flip" and size:
        pos = min(pos, size - 1)
        return data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1:]
    return b""


def _dumps(draw: Callable, value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8")


def _duplicate_a_key(draw: Callable, value: dict) -> bytes:
    """A JSON object text with one key given twice (``json`` would keep the last silently)."""
    key = draw(st.sampled_from(sorted(value)))
    body = json.dumps(value)
    return (b"{" + json.dumps(key).encode() + b": " + _dumps(draw, draw(JSON_VALUES))
            + b", " + body[1:].encode("utf-8"))


@st.composite
def json_variants(draw: Callable, seed: bytes) -> bytes:
    """A malformed variant of one JSON document."""
    doc = json.loads(seed)
    how = draw(st.sampled_from(["tree", "tree", "tree", "bytes", "duplicate"]))
    if how == "bytes":
        return mutate_bytes(draw, seed)
    if how == "duplicate" and isinstance(doc, dict) and doc:
        return _duplicate_a_key(draw, doc)
    for _ in range(draw(st.integers(1, 3))):
        doc = mutate_tree(draw, doc, JSON_VALUES)
    return _dumps(draw, doc)


@st.composite
def jsonl_variants(draw: Callable, seed: bytes) -> bytes:
    """A malformed variant of a JSON-lines file: one line changed structurally, lines added,
    dropped or duplicated, or the bytes damaged."""
    lines = seed.splitlines()
    how = draw(st.sampled_from(["line", "line", "line", "bytes", "lines"]))
    if how == "bytes":
        return mutate_bytes(draw, seed)
    index = draw(st.integers(0, len(lines) - 1))
    if how == "lines":
        op = draw(st.sampled_from(["drop", "dup", "junk", "blank", "all_blank"]))
        if op == "drop":
            del lines[index]
        elif op == "dup":
            lines.insert(index, lines[index])
        elif op == "junk":
            lines.insert(index, _dumps(draw, draw(JSON_VALUES)))
        elif op == "blank":
            lines.insert(index, b"   ")
        else:
            lines = [b""]
        return b"\n".join(lines) + b"\n"
    obj = json.loads(lines[index])
    if draw(st.booleans()) and isinstance(obj, dict) and obj:
        lines[index] = _duplicate_a_key(draw, obj)
    else:
        for _ in range(draw(st.integers(1, 3))):
            obj = mutate_tree(draw, obj, JSON_VALUES)
        lines[index] = _dumps(draw, obj)
    return b"\n".join(lines) + b"\n"


TENSOR_JUNK = st.one_of(
    JSON_LEAVES,
    st.sampled_from(["nan", "inf", "shape", "dtype", "empty"]).map(lambda k: ("tensor", k)))


def _tensor_like(node: Any, kind: str) -> Any:
    base = node if isinstance(node, torch.Tensor) else torch.zeros(3)
    if kind == "nan":
        return torch.full_like(base.float(), float("nan"))
    if kind == "inf":
        return torch.full_like(base.float(), float("inf"))
    if kind == "shape":
        return torch.zeros(base.numel() + 1)
    if kind == "dtype":
        return base.to(torch.int32) if base.is_floating_point() else base.float()
    return torch.zeros(0)


@st.composite
def torch_variants(draw: Callable, seed: bytes) -> bytes:
    """A malformed variant of a ``torch.save`` file: a state entry replaced, removed, retyped or
    made NaN/inf, or the zip bytes damaged."""
    if draw(st.integers(0, 3)) == 0:
        return mutate_bytes(draw, seed)
    state = torch.load(io.BytesIO(seed), weights_only=True)
    paths = [p for p in _paths(state) if p]
    path = draw(st.sampled_from(paths))
    node = state
    for key in path:
        node = node[key]
    junk = draw(TENSOR_JUNK)
    if isinstance(junk, tuple):
        junk = _tensor_like(node, junk[1])
    if draw(st.booleans()) and isinstance(node, torch.Tensor) and node.numel():
        junk = node.clone()
        if junk.is_floating_point():
            junk.view(-1)[draw(st.integers(0, junk.numel() - 1))] = draw(
                st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    state = _set(state, path, junk, delete=draw(st.integers(0, 4)) == 0)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@st.composite
def safetensors_variants(draw: Callable, seed: bytes) -> bytes:
    """A malformed variant of a ``.safetensors`` file: header JSON changed, a tensor made
    NaN/inf or reshaped, or the bytes damaged."""
    from safetensors.torch import load, save

    how = draw(st.sampled_from(["header", "tensor", "bytes"]))
    if how == "bytes":
        return mutate_bytes(draw, seed)
    if how == "header":
        size = int.from_bytes(seed[:8], "little")
        header = draw(json_variants(seed[8:8 + size]))
        new_size = draw(st.sampled_from([len(header), len(header) + 1, max(0, len(header) - 1)]))
        return new_size.to_bytes(8, "little") + header + seed[8 + size:]
    tensors = load(seed)
    key = draw(st.sampled_from(sorted(tensors)))
    tensors[key] = _tensor_like(tensors[key], draw(st.sampled_from(["nan", "inf", "shape", "dtype"])))
    return save(tensors)


@st.composite
def text_variants(draw: Callable, seed: bytes) -> bytes:
    """A damaged plain-text file (merges.txt)."""
    return mutate_bytes(draw, seed)


FORMATS: dict[str, Callable[[bytes], st.SearchStrategy[bytes]]] = {
    "json": json_variants, "jsonl": jsonl_variants, "torch": torch_variants,
    "safetensors": safetensors_variants, "text": text_variants,
}


class Blob:
    """A generated file's bytes with a short repr (Hypothesis prints failing examples; the
    violation message already shows what went wrong). ``.save(path)`` keeps one for a bug report."""

    def __init__(self, data: bytes):
        self.data = data

    def __repr__(self) -> str:
        digest = hashlib.sha256(self.data).hexdigest()[:12]
        head = self.data[:120]
        return f"Blob({len(self.data)} bytes, sha256 {digest}…, starts {head!r})"


# ---------------------------------------------------------------------------- the workspace
@dataclass
class Workspace:
    """What every target starts from, built once: the tiny task, a trained output directory
    and the evaluation fixtures."""

    root: Path
    tiny: dict[str, str]
    trained: Path
    cases: int = 0

    @classmethod
    def build(cls, root: Path) -> "Workspace":
        from edmem.run_qa import main as run_qa

        tiny = el_tiny.build(root / "tiny")
        trained = root / "trained"
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            status = run_qa(el_tiny.flags(tiny, trained, "--do_train", *QUICK))
        if status != 0:
            raise RuntimeError("could not train the tiny model for the fuzzing workspace")
        return cls(root=root, tiny=tiny, trained=trained)

    open_cases: list[Path] = field(default_factory=list)

    def case_dir(self) -> Path:
        self.cases += 1
        path = Path(tempfile.mkdtemp(prefix=f"case{self.cases}-", dir=self.root))
        self.open_cases.append(path)
        return path

    def clean_cases(self) -> None:
        """Remove the directories of finished cases (long runs would otherwise fill the disk)."""
        while self.open_cases:
            shutil.rmtree(self.open_cases.pop(), ignore_errors=True)


@dataclass
class Outcome:
    prog: str
    status: int | None
    stderr: str
    error: BaseException | None = None
    trace: str = ""


def call(prog: str, main: Callable[[list[str]], int], argv: list[str]) -> Outcome:
    """Run ``main(argv)`` in process, capturing stdout/stderr and any escaping exception."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - the harness reports every escape
        if isinstance(exc, KeyboardInterrupt):
            raise
        return Outcome(prog, None, err.getvalue(), exc, traceback.format_exc())
    finally:
        from edmem.runtime.logging_setup import close_logging
        close_logging()
    return Outcome(prog, status, err.getvalue())


def snapshot(directory: Path | None) -> dict[str, str]:
    """name -> sha256 of every file under ``directory`` except the append-only logs."""
    if directory is None or not directory.exists():
        return {}
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.endswith("log.txt")
            and "tensorboard" not in p.parts}


def check_contract(outcome: Outcome, fuzzed: Path, watched: Path | None, before: dict[str, str],
                   results: tuple[str, ...] = ()) -> str:
    """Raise :class:`ContractViolation` unless ``outcome`` keeps the contract; return "ok" or
    "error" (which branch of the contract it took)."""
    def fail(why: str) -> ContractViolation:
        return ContractViolation(f"{outcome.prog} on a malformed {fuzzed.name}: {why}\n"
                                 f"--- stderr ---\n{outcome.stderr[-3000:]}\n{outcome.trace}")

    if outcome.error is not None:
        raise fail(f"traceback: {type(outcome.error).__name__}: {outcome.error}")
    if "Traceback (most recent call last)" in outcome.stderr:
        raise fail("a traceback was printed")
    errors = [line for line in outcome.stderr.splitlines() if ": error: " in line]
    if watched is not None and watched.exists():
        leftovers = [p.name for p in watched.rglob("*.tmp")]
        if leftovers:
            raise fail(f"temp files left behind: {leftovers}")
    if outcome.status == 0:
        if errors:
            raise fail(f"exit 0 with an error line: {errors[0]}")
        for name in results:
            path = watched / name if watched is not None else Path(name)
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise fail(f"exit 0 but {name} is not a complete JSON file ({exc})") from None
        return "ok"
    if outcome.status != 1:
        raise fail(f"exit status {outcome.status} (expected 0 or 1)")
    if len(errors) != 1 or not errors[0].startswith(f"{outcome.prog}: error: "):
        raise fail(f"expected one '{outcome.prog}: error: ...' line, got {errors}")
    if str(fuzzed) not in errors[0] and str(fuzzed.parent) not in errors[0]:
        raise fail(f"the error line does not name {fuzzed}: {errors[0]}")
    after = snapshot(watched)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        raise fail(f"a failed run changed existing outputs: {changed}")
    return "error"


# ---------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One input kind: ``seed(ws)`` gives the valid file, ``fmt`` how to mutate it, ``run(ws,
    data)`` writes the variant where the command reads it, runs it and checks the contract."""

    name: str
    fmt: str
    seed: Callable[[Workspace], bytes]
    run: Callable[[Workspace, bytes], str]
    # cheap (ms), serve (a request), linker (an edmem ask / link run on the tiny model directory),
    # model (a prediction run), fit (edmem memory add, two steps), train (a short training run)
    cost: str = "cheap"
    tally: dict[str, int] = field(default_factory=dict)
    distinct: set[str] = field(default_factory=set)  # sha256 of every input tried

    def strategy(self, ws: Workspace) -> st.SearchStrategy[bytes]:
        return FORMATS[self.fmt](self.seed(ws))

    def check(self, ws: Workspace, data: bytes) -> str:
        """Run one case; count which branch of the contract it took ("ok" / "error"), or
        "violation" before re-raising a :class:`ContractViolation`."""
        result = "violation"  # unless run() returns
        self.distinct.add(hashlib.sha256(data).hexdigest())
        try:
            result = self.run(ws, data)
            return result
        finally:
            ws.clean_cases()
            self.tally[result] = self.tally.get(result, 0) + 1


def _evaluate(ws: Workspace, data: bytes, role: str) -> str:
    """``edmem evaluate all`` with one of its inputs malformed; an older ``--json`` report must
    survive a failure."""
    from edmem.evaluation.cli import main

    case = ws.case_dir()
    files = {"pred": EVAL / "el_predictions.json", "gold": EVAL / "gold.jsonl",
             "ans_link": EVAL / "sling.json", "entity_vocab": EVAL / "vocab.json"}
    fuzzed = case / files[role].name
    fuzzed.write_bytes(data)
    files[role] = fuzzed
    out = case / "report"
    out.mkdir()
    (out / "metrics.json").write_text('{"previous": "report"}\n')
    before = snapshot(out)
    argv = ["all", *[x for role_, path in files.items() for x in (f"-{role_}", str(path))],
            "--json", str(out / "metrics.json")]
    outcome = call("edmem evaluate all", main, argv)
    return check_contract(outcome, fuzzed, out, before, results=("metrics.json",))


def _predict_case(ws: Workspace, copy_inputs: bool = True) -> tuple[Path, dict[str, str], Path]:
    """A copy of the trained output directory holding an older predictions.json, and (with
    ``copy_inputs``) copies of the data and model directories, so each case can damage its own
    files. Without it the flags equal the training run's, as ``--resume`` requires."""
    case = ws.case_dir()
    out = case / "out"
    shutil.copytree(ws.trained, out)
    (out / "predictions.json").write_text('{"previous": ["run", [1]]}')
    if not copy_inputs:
        return out, dict(ws.tiny), case
    data = case / "data"
    shutil.copytree(ws.tiny["data_dir"], data)
    model = case / "model"
    shutil.copytree(ws.tiny["model_name"], model)
    paths = dict(ws.tiny, data_dir=str(data), model_name=str(model))
    return out, paths, case


def _predict(ws: Workspace, data: bytes, where: Callable[[Path, dict[str, str]], Path],
             prepare: Callable[[Path], None] | None = None) -> str:
    """``edmem predict`` with one file damaged: ``where(out, paths)`` says which."""
    from edmem.apps.run_qa import predict_main as main

    out, paths, case = _predict_case(ws)
    if prepare is not None:
        prepare(out)
    fuzzed = where(out, paths)
    if fuzzed.name == "entid2entityitemid_tiny.json":
        fuzzed = case / fuzzed.name
        paths["id2entity_file"] = str(fuzzed)
    fuzzed.write_bytes(data)
    before = snapshot(out)
    outcome = call("edmem predict", main, el_tiny.flags(paths, out))
    return check_contract(outcome, fuzzed, out, before, results=("predictions.json",))


def _train(ws: Workspace, data: bytes, where: Callable[[Path, dict[str, str]], Path],
           *extra: str) -> str:
    """``edmem train`` (one short epoch) into a copy of the trained directory, one file damaged."""
    from edmem.apps.run_qa import train_main as main

    out, paths, case = _predict_case(ws, copy_inputs="--resume" not in extra)
    (out / "predictions.json").unlink()
    fuzzed = where(out, paths)
    fuzzed.write_bytes(data)
    before = snapshot(out)
    outcome = call("edmem train", main, el_tiny.flags(paths, out, *QUICK, *extra))
    return check_contract(outcome, fuzzed, out, before)


def _pretrain(ws: Workspace, data: bytes, name: str) -> str:
    """``edmem pretrain`` (two steps) on a malformed passage corpus or entity vocabulary."""
    from edmem.apps.pretrain import main

    case = ws.case_dir()
    files = {"train.jsonl": CORPUS / "train.jsonl", "entid2entityitemid.json":
             CORPUS / "entid2entityitemid.json"}
    fuzzed = case / name
    fuzzed.write_bytes(data)
    files[name] = fuzzed
    out = case / "out"
    argv = ["--train_file", str(files["train.jsonl"]), "--model_name", ws.tiny["model_name"],
            "--id2entity_file", str(files["entid2entityitemid.json"]), "--compact_entity_memory",
            "--num_lower_layers", "1", "--num_upper_layers", "1", "--entity_embed_size", "16",
            "--output_dir", str(out), "--cache_dir", str(case / "cache"), "--max_seq_length", "48",
            "--train_batch_size", "16", "--max_steps", "2", "--eval_period", "2",
            "--tensorboard", "False", "--num_threads", "1"]
    outcome = call("edmem pretrain", main, argv)
    return check_contract(outcome, fuzzed, out, {})


def _read(path: Path) -> Callable[[Workspace], bytes]:
    return lambda ws: path.read_bytes()


def _split(split: str) -> Callable[[Path, dict[str, str]], Path]:
    return lambda out, paths: Path(paths["data_dir"]) / "wq" / f"el_wq-{split}.jsonl"


def _drop(name: str) -> Callable[[Path], None]:
    return lambda out: (out / name).unlink()


def targets() -> dict[str, Target]:
    """Every input kind edmem reads today (docs/reliability.md lists them)."""
    trained = lambda name: (lambda ws: (ws.trained / name).read_bytes())  # noqa: E731
    in_out = lambda name: (lambda out, paths: out / name)  # noqa: E731
    in_model = lambda name: (lambda out, paths: Path(paths["model_name"]) / name)  # noqa: E731
    table = [
        # evaluation inputs
        Target("predictions", "json", _read(EVAL / "el_predictions.json"),
               lambda ws, d: _evaluate(ws, d, "pred")),
        Target("gold_jsonl", "jsonl", _read(EVAL / "gold.jsonl"), lambda ws, d: _evaluate(ws, d, "gold")),
        Target("sling_links", "json", _read(EVAL / "sling.json"),
               lambda ws, d: _evaluate(ws, d, "ans_link")),
        Target("entity_name_list", "json", _read(EVAL / "vocab.json"),
               lambda ws, d: _evaluate(ws, d, "entity_vocab")),
        # prediction inputs
        Target("el_jsonl_test", "jsonl", lambda ws: (Path(ws.tiny["data_dir"]) / "wq" / "el_wq-test.jsonl").read_bytes(),
               lambda ws, d: _predict(ws, d, _split("test")), cost="model"),
        Target("id2entity", "json", lambda ws: Path(ws.tiny["id2entity_file"]).read_bytes(),
               lambda ws, d: _predict(ws, d, lambda out, paths: Path(paths["id2entity_file"])),
               cost="model"),
        Target("checkpoint_bin", "torch", trained("pytorch_model.bin"),
               lambda ws, d: _predict(ws, d, in_out("pytorch_model.bin")), cost="model"),
        Target("checkpoint_safetensors", "safetensors", trained("model.safetensors"),
               lambda ws, d: _predict(ws, d, in_out("model.safetensors"), _drop("pytorch_model.bin")),
               cost="model"),
        Target("entity_rows", "json", trained("entity_rows.json"),
               lambda ws, d: _predict(ws, d, in_out("entity_rows.json")), cost="model"),
        Target("model_config", "json", lambda ws: (Path(ws.tiny["model_name"]) / "config.json").read_bytes(),
               lambda ws, d: _predict(ws, d, in_model("config.json")), cost="model"),
        Target("tokenizer_vocab", "json", lambda ws: (Path(ws.tiny["model_name"]) / "vocab.json").read_bytes(),
               lambda ws, d: _predict(ws, d, in_model("vocab.json")), cost="model"),
        Target("tokenizer_merges", "text", lambda ws: (Path(ws.tiny["model_name"]) / "merges.txt").read_bytes(),
               lambda ws, d: _predict(ws, d, in_model("merges.txt")), cost="model"),
        # training inputs
        Target("el_jsonl_train", "jsonl", lambda ws: (Path(ws.tiny["data_dir"]) / "wq" / "el_wq-train.jsonl").read_bytes(),
               lambda ws, d: _train(ws, d, _split("train"), "--overwrite_output", "True"), cost="train"),
        Target("training_state", "torch", trained("training_state.pt"),
               lambda ws, d: _train(ws, d, in_out("training_state.pt"), "--resume", "True"), cost="train"),
        # pretraining inputs
        Target("passages", "jsonl", _read(CORPUS / "train.jsonl"),
               lambda ws, d: _pretrain(ws, d, "train.jsonl"), cost="train"),
        Target("pretraining_vocab", "json", _read(CORPUS / "entid2entityitemid.json"),
               lambda ws, d: _pretrain(ws, d, "entid2entityitemid.json"), cost="train"),
    ]
    table += inference_targets()
    return {target.name: target for target in table}


# ---------------------------------------------------------------------------- model directories
# Inputs of the inference applications (edmem ask / link / serve / memory): a tiny model directory
# (edmem.testing.build_tiny_model_dir), built once per workspace when a target first needs it.
QUESTION = "what is the capital of france?"
MODEL_DIR_FILES = {"manifest": ("edmem_model.json", "json"), "config": ("config.json", "json"),
                   "entities": ("entities.jsonl", "jsonl"), "rows": ("entity_rows.json", "json"),
                   "aliases": ("aliases.jsonl", "jsonl"), "weights": ("model.safetensors", "safetensors")}
_SHARED: dict[str, Any] = {}


def model_dir(ws: Workspace) -> Path:
    """The workspace's tiny model directory (untrained: the contract does not need accuracy)."""
    path = ws.root / "model_dir"
    if not path.exists():
        from edmem.testing import build_tiny_model_dir
        build_tiny_model_dir(path)
    return path


def _linker(ws: Workspace) -> Any:
    """One real EntityLinker per workspace, for the server target."""
    key = str(ws.root)
    if key not in _SHARED:
        from edmem.inference.linker import EntityLinker
        _SHARED[key] = EntityLinker.from_pretrained(model_dir(ws), device="cpu")
    return _SHARED[key]


def _ask(ws: Workspace, data: bytes, name: str | None = None) -> str:
    """``edmem ask --json`` on a copy of the model directory with ``name`` damaged, or (``name``
    None) with ``data`` as its ``--alias_file``."""
    from edmem.apps.ask import main

    case = ws.case_dir()
    model = case / "model"
    shutil.copytree(model_dir(ws), model)
    extra: list[str] = []
    if name is None:
        fuzzed = case / "aliases.jsonl"
        extra = ["--alias_file", str(fuzzed)]
    else:
        fuzzed = model / name
    fuzzed.write_bytes(data)
    before = snapshot(case)
    outcome = call("edmem ask", main, ["--model", str(model), *extra, "--json", QUESTION])
    result = check_contract(outcome, fuzzed, case, before)
    if snapshot(case) != before:  # ask only reads
        raise ContractViolation(f"edmem ask changed its model directory (malformed {fuzzed.name})")
    return result


LINK_SEED_TEXT = (b"what is the capital of france?\nwhich city is the capital of japan?\n\n"
                  b"paris and rome\n")
LINK_SEED_JSONL = b"".join(json.dumps(row).encode() + b"\n" for row in [
    {"id": "q1", "question": "what is the capital of france?"},
    {"id": "q2", "question": "paris and rome", "mentions": [{"offset": 10, "length": 4}]},
    {"id": "q3", "question": "which city is the capital of japan?", "link_offset": [29],
     "link_length": [5], "link_target": ["1008"]}])
LINK_PREVIOUS = b'{"id": "old", "question": "kept as it was"}\n'


def _link(ws: Workspace, data: bytes, suffix: str) -> str:
    """``edmem link`` appending to an output that already holds one result line: whatever
    happens, that line stays first and every line of the output is complete JSON."""
    from edmem.apps.link import main

    case = ws.case_dir()
    fuzzed = case / f"questions{suffix}"
    fuzzed.write_bytes(data)
    out = case / "out.jsonl"
    out.write_bytes(LINK_PREVIOUS)
    outcome = call("edmem link", main, ["--model", str(model_dir(ws)), "--input", str(fuzzed),
                                        "--output", str(out), "--no_progress"])
    result = check_contract(outcome, fuzzed, None, {})
    written = out.read_bytes()
    if not written.startswith(LINK_PREVIOUS):
        raise ContractViolation(f"edmem link on a malformed {fuzzed.name} changed the earlier "
                                f"output line: {written[:200]!r}")
    for line in written.splitlines():
        try:
            json.loads(line)
        except ValueError:
            raise ContractViolation(f"edmem link on a malformed {fuzzed.name} wrote a torn line: "
                                    f"{line[:200]!r}") from None
    return result


SERVE_SEED = json.dumps({"questions": [
    QUESTION, {"question": "paris and rome", "mentions": [{"offset": 10, "length": 4}]}],
    "top_k": 3}).encode()


def _serve(ws: Workspace, data: bytes) -> str:
    """``POST /v1/link`` with a malformed body, through FastAPI's TestClient on the real app and
    a real tiny linker: a 2xx JSON answer or a 4xx JSON error body; never a 5xx, never an
    exception escaping the app (the test client re-raises them)."""
    from fastapi.testclient import TestClient

    from edmem.apps.serve.app import create_app

    try:
        with TestClient(create_app(_linker(ws))) as client:
            response = client.post("/v1/link", content=data,
                                   headers={"content-type": "application/json"})
    except Exception as exc:  # noqa: BLE001 - the contract forbids every escape
        raise ContractViolation(f"POST /v1/link: the app raised {type(exc).__name__}: {exc}\n"
                                f"{traceback.format_exc()}") from None
    try:
        body = response.json()
    except ValueError:
        raise ContractViolation(f"POST /v1/link answered {response.status_code} with a body "
                                f"that is not JSON: {response.text[:300]!r}") from None
    if 200 <= response.status_code < 300:
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ContractViolation(f"POST /v1/link: 2xx without results: {response.text[:300]}")
        return "ok"
    if 400 <= response.status_code < 500 and isinstance(body, dict) and "error" in body:
        return "error"
    raise ContractViolation(f"POST /v1/link answered {response.status_code}: {response.text[:300]}")


MEMORY_FAST = ("--steps", "2", "--batch_size", "4", "--no_progress")
MEMORY_NEW = b"".join(json.dumps(row).encode() + b"\n" for row in [
    {"id": 2000, "name": "Chile", "aliases": ["Republic of Chile"], "type": "country"},
    {"id": 2001, "name": "Santiago", "aliases": [], "type": "city"}])
MEMORY_PASSAGES = b"".join(json.dumps(row).encode() + b"\n" for row in [
    {"id": "n1", "text": "The capital of Chile is Santiago.",
     "hyperlinks": {"link_offset": [15, 24], "link_length": [5, 8], "link_target": [2000, 2001]}},
    {"id": "n2", "text": "Santiago is a city in Chile, west of Peru.",
     "hyperlinks": {"link_offset": [0, 22, 37], "link_length": [8, 5, 4],
                    "link_target": [2001, 2000, 1006]}}])


def _memory_add(ws: Workspace, data: bytes, role: str) -> str:
    """``edmem memory add`` (two fitting steps) with NEW.jsonl or TEXT.jsonl malformed: success
    writes a complete model directory at ``--output``; failure writes nothing there."""
    from edmem.cli import main as edmem_main

    case = ws.case_dir()
    files = {"entities": case / "new.jsonl", "passages": case / "passages.jsonl"}
    files["entities"].write_bytes(MEMORY_NEW)
    files["passages"].write_bytes(MEMORY_PASSAGES)
    fuzzed = files[role]
    fuzzed.write_bytes(data)
    out = case / "out"
    before = snapshot(case)
    outcome = call("edmem memory add", lambda argv: edmem_main(["memory", "add", *argv]),
                   ["--model", str(model_dir(ws)), "--entities", str(files["entities"]),
                    "--passages", str(files["passages"]), "--output", str(out), *MEMORY_FAST])
    return check_contract(outcome, fuzzed, case, before,
                          results=("out/edmem_model.json", "out/config.json"))


def inference_targets() -> list[Target]:
    """The inputs of the inference applications: alias files, model directories, edmem link
    inputs, server request bodies, edmem memory add inputs."""
    def seed_of(name: str) -> Callable[[Workspace], bytes]:
        return lambda ws: (model_dir(ws) / name).read_bytes()

    table = [Target("alias_file", "jsonl", seed_of("aliases.jsonl"), lambda ws, d: _ask(ws, d),
                    cost="linker")]
    for kind, (name, fmt) in MODEL_DIR_FILES.items():
        table.append(Target(f"model_dir_{kind}", fmt, seed_of(name),
                            lambda ws, d, name=name: _ask(ws, d, name), cost="linker"))
    table += [
        Target("link_text", "text", lambda ws: LINK_SEED_TEXT, lambda ws, d: _link(ws, d, ".txt"),
               cost="linker"),
        Target("link_jsonl", "jsonl", lambda ws: LINK_SEED_JSONL,
               lambda ws, d: _link(ws, d, ".jsonl"), cost="linker"),
        Target("serve_body", "json", lambda ws: SERVE_SEED, _serve, cost="serve"),
        Target("memory_new_entities", "jsonl", lambda ws: MEMORY_NEW,
               lambda ws, d: _memory_add(ws, d, "entities"), cost="fit"),
        Target("memory_passages", "jsonl", lambda ws: MEMORY_PASSAGES,
               lambda ws, d: _memory_add(ws, d, "passages"), cost="fit"),
    ]
    return table
