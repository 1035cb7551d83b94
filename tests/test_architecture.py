"""The engine stands alone: no front end in it, options declared once, parts usable on their own."""

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ftpe_magics import FtpeError, Session, TrainingObserver
from ftpe_magics.arguments import build
from ftpe_magics.engine.adapters.registry import AdapterRegistry
from ftpe_magics.engine.finetune.methods import METHODS
from ftpe_magics.engine.finetune.options import FinetuneOptions
from ftpe_magics.engine.inference.generation import GenerationSettings
from ftpe_magics.engine.model.loading import LoadedModel, resolve_source
from ftpe_magics.engine.options import (
    CompareOptions,
    CurveOptions,
    DataOptions,
    EvalOptions,
    FewShotOptions,
    flag_of,
    option_fields,
)
from ftpe_magics.engine.run_log import RunLog
from ftpe_magics.magics import FtpeMagics

PACKAGE = Path(__file__).resolve().parents[1] / "ftpe_magics"
README = (PACKAGE.parent / "README.md").read_text()
OPTION_CLASSES = {"prompt": [GenerationSettings], "fewshot": [FewShotOptions, DataOptions, EvalOptions],
                  "compare": [CurveOptions, CompareOptions, DataOptions, EvalOptions],
                  "finetune": [FinetuneOptions, DataOptions]}
ROWS = [{"text": t, "label": label} for t, label in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative")]] * 2


@pytest.mark.multiprocess
def test_engine_imports_no_front_end_in_a_fresh_interpreter():
    code = ("import importlib, pkgutil, sys, warnings; import ftpe_magics.engine as e; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(e.__path__, 'ftpe_magics.engine.')]; "
            "import json; print(json.dumps({'front_end': [n for n in ('IPython', 'ipywidgets', 'matplotlib') "
            "if n in sys.modules], 'our_filters': [str(f[1].pattern) for f in warnings.filters if f[1] is not None "
            "and ('Position ids' in f[1].pattern or 'is_gradient_checkpointing' in f[1].pattern)]}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # the library notices the engine silences are silenced only inside its own calls, not at import
    assert json.loads(out.strip().splitlines()[-1]) == {"front_end": [], "our_filters": []}


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    return tree, [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_over_60_lines_and_no_print_in_the_engine():
    long = [f"{path.name}:{node.name}" for path in PACKAGE.rglob("*.py") for node in _functions(path)[1]
            if node.end_lineno - node.lineno + 1 > 60]
    assert long == []
    prints = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path in (PACKAGE / "engine").rglob("*.py")
              for node in ast.walk(_functions(path)[0])
              if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"]
    assert prints == []


@pytest.mark.parametrize("magic", sorted(OPTION_CLASSES))
def test_magic_arguments_come_from_the_option_fields(magic):
    parser = getattr(FtpeMagics, magic).parser
    actions = {action.dest: action for action in parser._actions}
    for options_class in OPTION_CLASSES[magic]:
        for item in option_fields(options_class):
            action = actions[item.name]
            assert action.option_strings == [flag_of(item)]
            assert action.default == item.default
            assert item.metadata["ftpe"]["help"].split(" (")[0] in action.help
            if item.metadata["ftpe"]["choices"]:
                assert tuple(action.choices) == item.metadata["ftpe"]["choices"]


@pytest.mark.parametrize("magic", sorted(OPTION_CLASSES))
def test_the_readme_table_names_every_option_and_its_choices(magic):
    rows = [line for line in README.splitlines() if line.startswith("| `--")]
    for options_class in OPTION_CLASSES[magic]:
        for item in option_fields(options_class):
            row = next((r for r in rows if f"`{flag_of(item)}" in r.split("|")[1]), None)
            assert row is not None, f"README has no table row for {flag_of(item)}"
            for choice in item.metadata["ftpe"]["choices"] or ():
                assert choice in row, f"README row for {flag_of(item)} does not name {choice!r}"


def test_method_choices_exist_once():
    field = next(f for f in option_fields(FinetuneOptions) if f.name == "method")
    assert field.metadata["ftpe"]["choices"] == tuple(METHODS)


def test_build_reads_every_field_by_name():
    parsed = FtpeMagics.finetune.parser.parse_args(["--train", "t", "--name", "n", "--rank", "4", "--lr", "0.01"])
    options = build(FinetuneOptions, parsed)
    assert options.rank == 4 and options.lr == 0.01 and options.batch_size == FinetuneOptions().batch_size
    assert dataclasses.asdict(options).keys() == {f.name for f in option_fields(FinetuneOptions)}


@pytest.mark.parametrize("options_class, values, message", [
    (FinetuneOptions, {"rank": 0}, "--rank must be at least 1"),
    (FinetuneOptions, {"lr": float("nan")}, "--lr must be a finite number above 0"),
    (FinetuneOptions, {"dropout": 2.0}, "--dropout must be at least 0 and below 1"),
    (FinetuneOptions, {"method": "lorra"}, "--method must be one of lora"),
    (GenerationSettings, {"temperature": float("inf")}, "--temperature must be a finite number"),
    (EvalOptions, {"batch_size": 0}, "--batch-size must be at least 1"),
    (FewShotOptions, {"sweep_k": "1,a"}, "--sweep-k takes a comma-separated list of int"),
    (CompareOptions, {"answer_regex": "("}, "--answer-regex '\\(' is not a valid regular expression"),
])
def test_each_range_is_checked_where_it_is_declared(options_class, values, message):
    with pytest.raises(FtpeError, match=message):
        options_class(**values)


def test_parts_work_alone(tiny_model_dir):
    loaded = LoadedModel()
    loaded.load(resolve_source(str(tiny_model_dir)), str(tiny_model_dir), "cpu", torch.float32)
    first_key = loaded.load_id
    adapters = AdapterRegistry(loaded)
    assert adapters.model is loaded.model and len(adapters) == 0 and adapters.active is None
    with pytest.raises(FtpeError, match="No adapter named 'x'"):
        adapters.use("x")
    loaded.load(resolve_source(str(tiny_model_dir)), str(tiny_model_dir), "cpu", torch.float32)
    assert loaded.load_id != first_key and loaded.load_count == 2  # caches keyed by it die with the old model
    loaded.unload()
    assert not loaded.loaded and loaded.load_id is None
    assert RunLog().previous("nothing") is None


class Recorder(TrainingObserver):
    def __init__(self):
        self.calls = []

    def start(self, plan):
        self.calls.append(("start", plan.total_steps, plan.method))

    def step(self, step, tokens):
        self.calls.append(("step", step, tokens > 0))

    def log(self, record):
        self.calls.append(("log", record["step"]))

    def evaluation(self, record):
        self.calls.append(("evaluation", record["step"], "eval_accuracy" in record))

    def end(self, adapter):
        self.calls.append(("end", adapter.name))


def test_training_reports_to_observers_and_the_history_is_the_engines(tiny_session):
    recorder = Recorder()
    adapter = tiny_session.finetune("Review: {text}\nSentiment: {label}", ROWS, "observed", eval=ROWS[:4],
                                    observers=[recorder], max_steps=4, batch_size=4, eval_steps=2, warmup=0, lr=1e-2)
    assert recorder.calls[0] == ("start", 4, "lora") and recorder.calls[-1] == ("end", "observed")
    assert [c[1] for c in recorder.calls if c[0] == "step"] == [1, 2, 3, 4]
    assert [c for c in recorder.calls if c[0] == "evaluation"] == [("evaluation", 2, True), ("evaluation", 4, True)]
    assert [r["step"] for r in adapter.history if "loss" in r] == [1, 2, 3, 4]


def test_the_callers_random_state_is_left_alone(tiny_session):
    import random

    import numpy as np

    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    expected = (torch.rand(1).item(), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    tiny_session.prompt("hi", raw=True, temperature=1.0, seed=7, max_new_tokens=2)
    tiny_session.finetune("Review: {text}\nSentiment: {label}", ROWS, "rng", max_steps=2, batch_size=4, warmup=0)
    assert (torch.rand(1).item(), random.random(), np.random.rand()) == expected


def test_similar_embeddings_are_keyed_by_the_load_not_the_object_id(tiny_model_dir, tmp_path):
    session = Session(log=lambda m: None)
    session.config.cache_dir = str(tmp_path)
    session.load(str(tiny_model_dir))
    session.fewshot("Review: {text}\nSentiment: {label}", ROWS, ROWS[:2], k=2, select="similar", name="sim",
                    allow_overlap=True)
    first_keys = set(session.embedding_cache)
    session.load(str(tiny_model_dir))
    assert session.model_key.split(":")[0] not in {key.split(":")[0] for key in first_keys}


def _engine_imports() -> dict[str, set[str]]:
    """Each engine part (a folder, or a top-level module) -> the engine parts it imports, lazy imports included
    and type-only imports left out."""
    engine = PACKAGE / "engine"
    edges: dict[str, set[str]] = {}
    for path in engine.rglob("*.py"):
        relative = path.relative_to(engine).with_suffix("").parts
        part = relative[0]
        package = ["ftpe_magics", "engine", *relative[:-1]] if relative[-1] != "__init__" else \
            ["ftpe_magics", "engine", *relative[:-1]]
        tree = ast.parse(path.read_text())
        typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", "") == "TYPE_CHECKING" for node in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                if node.level:
                    target = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
                else:
                    target = (node.module or "").split(".")
                if target[:2] == ["ftpe_magics", "engine"] and len(target) > 2 and target[2] != part:
                    edges.setdefault(part, set()).add(target[2])
                elif target[:1] == ["ftpe_magics"] and target[1:2] != ["engine"]:
                    edges.setdefault(part, set()).add("FRONT END: " + ".".join(target))
    return edges


def test_no_import_runs_back_up_between_the_engine_parts():
    edges = _engine_imports()
    assert not [target for targets in edges.values() for target in targets if target.startswith("FRONT END")]
    cycles, state = [], {}

    def visit(part: str, trail: list[str]) -> None:
        state[part] = "open"
        for target in sorted(edges.get(part, ())):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [part, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[part] = "done"

    for part in sorted(edges):
        if part not in state:
            visit(part, [part])
    assert cycles == [], f"engine parts that import each other: {cycles}"
