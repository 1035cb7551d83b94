"""Bad input and faults: every case is one line of the table below.

For each, the helper checks the three promises: the output is at most three non-blank lines (an
error that names the problem and the fix, never a traceback), ``%ftpe status`` still works with the
same model and adapters, and nothing the user had (variables, files, adapters, history) changed.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError

from ftpe_magics import get_session

TEMPLATE = "Review: {text}\\nSentiment: {label}"
ROWS = [{"text": t, "label": label} for t, label in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative"),
    ("a joy", "positive"), ("boring", "negative"), ("superb", "positive"), ("a mess", "negative")]]
CELL_FT = "%%finetune --train rows --name t --max-steps 2 --batch-size 4 {opts}\nReview: {{text}}\nSentiment: {{label}}"
CELL_FS = "%%fewshot --train rows --eval rows --allow-overlap {opts}\nReview: {{text}}\nSentiment: {{label}}"
CELL_CMP = "%%compare --eval rows {opts}\nzero: prompt Review: {{text}}\\nSentiment:"


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _user_folder(work: Path) -> None:
    _write(work / "mine" / "analysis_notes.txt", "my notes")
    _write(work / "mine" / "figures" / "plot.txt", "a plot")


def _foreign_adapter(work: Path) -> None:
    """A peft LoRA trained on a model of another size, saved as a plain peft folder."""
    from peft import LoraConfig, get_peft_model
    from tiny_model import build_model

    model = build_model(384)
    model.config.hidden_size = 16  # another architecture: rebuild with a smaller hidden size
    from transformers import LlamaForCausalLM

    other = LlamaForCausalLM(model.config.__class__(**{**model.config.to_dict(), "hidden_size": 16,
                                                       "intermediate_size": 32}))
    get_peft_model(other, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(work / "foreign")


def _broken_meta(work: Path) -> None:
    _write(work / "broken" / "adapter_config.json", "{}")
    _write(work / "broken" / "ftpe_adapter.json", "{not json")


# (id, setup(ns, work), cell with {work}, expected words in the one-line error)
CASES = [
    ("save-into-user-folder", lambda ns, w: _user_folder(w), "%ftpe save saved {work}/mine",
     "already holds other files"),
    ("save-onto-a-file", lambda ns, w: _write(w / "notes.txt", "x"), "%ftpe save saved {work}/notes.txt",
     "is a file"),
    ("save-under-a-file", lambda ns, w: _write(w / "notes.txt", "x"), "%ftpe save saved {work}/notes.txt/sub",
     "Cannot write to"),
    ("load-empty-folder", lambda ns, w: (w / "empty").mkdir(parents=True), "%ftpe load {work}/empty",
     "no config.json"),
    ("load-pickle-only", lambda ns, w: (_write(w / "pt" / "config.json", '{"model_type": "llama"}'),
                                        _write(w / "pt" / "pytorch_model.bin", b"x")),
     "%ftpe load {work}/pt", "loads safetensors only"),
    ("load-not-a-gguf", lambda ns, w: _write(w / "fake.gguf", "hello"), "%ftpe load {work}/fake.gguf",
     "not a GGUF file"),
    ("load-truncated-gguf", lambda ns, w: _write(w / "cut.gguf", b"GGUF\x03\x00\x00\x00" + b"\x00" * 40),
     "%ftpe load {work}/cut.gguf", "not a GGUF file"),
    ("cache-not-writable", lambda ns, w: (_write(w / "m.gguf", "hello"), _write(w / "cachefile", "x"),
                                          ns.update(_config_cache=str(w / "cachefile" / "sub"))),
     "%ftpe load {work}/m.gguf", "is not writable"),
    ("csv-broken-row", lambda ns, w: _write(w / "bad.csv", 'text,label\n"open quote,1\nok,0\n'),
     CELL_FS.format(opts="--k 1").replace("--train rows", "--train {work}/bad.csv"), "could not be read as CSV"),
    ("csv-empty", lambda ns, w: _write(w / "empty.csv", ""),
     CELL_FS.format(opts="--k 1").replace("--train rows", "--train {work}/empty.csv"), "empty.csv is empty"),
    ("jsonl-bad-line", lambda ns, w: _write(w / "bad.jsonl", '{"text": "a", "label": "x"}\n{oops\n'),
     CELL_FS.format(opts="--k 1").replace("--train rows", "--train {work}/bad.jsonl"), "bad.jsonl, line 2"),
    ("sweep-k-not-int", None, CELL_FS.format(opts="--sweep-k 1,a"), "--sweep-k takes a comma-separated list"),
    ("temperature-nan", None, "%%prompt --temperature nan\nhi", "--temperature must be a finite number"),
    ("temperature-negative", None, "%%prompt --temperature -1\nhi", "--temperature must be at least 0"),
    ("top-p-zero", None, "%%prompt --top-p 0\nhi", "--top-p must be above 0"),
    ("max-new-tokens-zero", None, "%%prompt --max-new-tokens 0\nhi", "--max-new-tokens must be at least 1"),
    ("answer-regex-invalid", None, CELL_CMP.format(opts="--answer-regex '('"), "not a valid regular expression"),
    ("samples-zero", None, CELL_CMP.format(opts="--samples 0"), "--samples must be at least 1"),
    ("rank-zero", None, CELL_FT.format(opts="--rank 0"), "--rank must be at least 1"),
    ("dropout-two", None, CELL_FT.format(opts="--dropout 2"), "--dropout must be at least 0 and below 1"),
    ("warmup-negative", None, CELL_FT.format(opts="--warmup -1"), "--warmup must be at least 0"),
    ("lr-nan", None, CELL_FT.format(opts="--lr nan"), "--lr must be a finite number"),
    ("lr-inf", None, CELL_FT.format(opts="--lr inf"), "--lr must be a finite number"),
    ("epochs-zero", None, CELL_FT.format(opts="--epochs 0"), "--epochs must be above 0"),
    ("val-split-too-big", None, CELL_FT.format(opts="--val-split 1.5"), "--val-split must be above 0"),
    ("target-modules-unknown", None, CELL_FT.format(opts="--target-modules nope_proj"),
     "no module named 'nope_proj'"),
    ("name-base", None, CELL_FT.format(opts="").replace("--name t", "--name base"), "'base' names the model"),
    ("lone-surrogate-in-prompt", lambda ns, w: ns.update(topic="a\ud800b"), "%%prompt\nTell me about {topic}",
     "not valid Unicode"),
    ("lone-surrogate-in-data", lambda ns, w: ns.update(rows=ROWS + [{"text": "x\udcffy", "label": "positive"}]),
     CELL_FS.format(opts="--k 1"), "not valid Unicode"),
    ("nan-text", lambda ns, w: ns.update(rows=pd.DataFrame(ROWS + [{"text": math.nan, "label": "positive"}])),
     CELL_FS.format(opts="--k 1"), "has no text in column 'text'"),
    ("nan-label", lambda ns, w: ns.update(rows=pd.DataFrame(ROWS + [{"text": "fine", "label": math.nan}])),
     CELL_FS.format(opts="--k 1"), "has no label in column 'label'"),
    ("limit-zero", None, CELL_FS.format(opts="--k 1 --limit 0"), "--limit must be at least 1"),
    ("k-bigger-than-pool", None, CELL_FS.format(opts="--k 100"), "--k 100 is more than the 8 examples"),
    ("batch-size-zero", None, CELL_FS.format(opts="--k 1 --batch-size 0"), "--batch-size must be at least 1"),
    ("orders-zero", None, CELL_FS.format(opts="--orders 0"), "--orders must be at least 1"),
    ("metric-unknown", None, CELL_CMP.format(opts="--metric nosuch"), "Unknown metric 'nosuch'"),
    ("metric-returns-seven", lambda ns, w: ns.update(seven=lambda p, r: 7.0), CELL_CMP.format(opts="--metric seven"),
     "returned 7.0"),
    ("metric-judge-without-template", None, CELL_CMP.format(opts="--metric judge"), "needs --judge-template VAR"),
    ("judge-template-without-output", lambda ns, w: ns.update(grader="Grade {reference}"),
     CELL_CMP.format(opts="--metric judge --judge-template grader"), "lacks {output}"),
    ("judge-grades-one", lambda ns, w: ns.update(grader="Grade {output} against {reference}"),
     CELL_CMP.format(opts="--metric judge --judge-template grader --judge-grades yes"),
     "two or more distinct grades"),
    ("metric-returns-nan", lambda ns, w: ns.update(nanny=lambda p, r: math.nan), CELL_CMP.format(opts="--metric nanny"),
     "returned nan"),
    ("prompt-longer-than-context", lambda ns, w: ns.update(huge="word " * 2_000_000), "%%prompt\n{huge}",
     "the model reads at most"),
    ("malformed-adapter-json", lambda ns, w: _broken_meta(w), "%ftpe load-adapter {work}/broken", "is not valid JSON"),
    ("adapter-of-another-model", lambda ns, w: _foreign_adapter(w), "%ftpe load-adapter {work}/foreign",
     "does not fit the model loaded"),
    ("l2-negative", None, CELL_FT.format(opts="--method probe --l2 -1"), "--l2 must be at least 0"),
    ("pool-unknown", None, CELL_FT.format(opts="--method probe --pool middle"), "argument --pool: invalid choice"),
    ("classifier-eval-label-unseen", lambda ns, w: ns.update(odd=[{"text": "fine", "label": "neutral"}]),
     "%%compare --eval odd\nc: adapter saved-probe", "which the classifier was not trained on"),
    ("classifier-with-metric", None, "%%compare --eval rows --metric exact\nc: adapter saved-probe",
     "is a classifier"),
    ("use-unknown-adapter", None, "%ftpe use nosuch", "No adapter named 'nosuch'"),
    ("compare-unknown-kind", None, "%%compare --eval rows\nzero: promt Review: {text}", "unknown kind 'promt'"),
    ("history-since-not-a-date", None, "%ftpe history --since yesterday", "is neither a date"),
    ("history-kind-unknown", None, "%ftpe history --kind nope", "argument --kind: invalid choice"),
    ("show-not-a-number", None, "%ftpe show latest", "Usage: %ftpe show RUN"),
    ("show-with-the-store-off", None, "%ftpe show 3", "The run store is off"),
    ("search-instructions-unknown", None, CELL_FS.format(opts="--search 2 --instructions nosuch"),
     "--instructions: no variable named 'nosuch'"),
    ("search-verbalizer-incomplete", lambda ns, w: ns.update(words=[{"positive": "great"}]),
     CELL_FS.format(opts="--search 2 --verbalizers words"), "gives no word for label 'negative'"),
    ("search-zero", None, CELL_FS.format(opts="--search 0"), "--search must be at least 1"),
    ("search-k-not-int", None, CELL_FS.format(opts="--search 2 --search-k 1,x"), "--search-k takes a comma-separated"),
    ("search-val-split-one", None, CELL_FS.format(opts="--search 2 --val-split 1"), "--val-split must be above 0"),
    ("search-with-sweep", None, CELL_FS.format(opts="--search 2 --sweep-k 1,2"), "use one of them"),
    ("nproc-batch-not-divisible", None, CELL_FT.format(opts="--nproc 3"), "does not split over 3 processes"),
    ("nproc-zero", None, CELL_FT.format(opts="--nproc 0"), "--nproc must be at least 1"),
    ("fsdp-on-cpu", None, CELL_FT.format(opts="--nproc 2 --strategy fsdp"), "on CPU use --strategy ddp"),
    ("strategy-without-nproc", None, CELL_FT.format(opts="--strategy fsdp"), "add --nproc N"),
    ("nnodes-without-master", None, CELL_FT.format(opts="--nproc 1 --nnodes 2 --node-rank 1"),
     "needs --master-addr HOST --master-port PORT"),
    ("master-port-too-big", None, CELL_FT.format(opts="--nproc 1 --master-port 70000"),
     "--master-port must be at least 1 and at most 65535"),
    ("device-map-unknown", None, "%ftpe load --device-map everywhere", "argument --device-map: invalid choice"),
    ("node-rank-past-nnodes", None, CELL_FT.format(opts="--nproc 1 --node-rank 1"), "--node-rank must be below"),
    ("nproc-with-probe", None, CELL_FT.format(opts="--method probe --nproc 2"), "classification head in seconds"),
    ("max-memory-without-device-map", None, "%ftpe load --max-memory 0=1GiB", "add --device-map auto"),
    ("max-memory-unreadable", None, "%ftpe load --device-map auto --max-memory lots", "cannot read 'lots'"),
    ("quantize-unknown", None, "%ftpe load --quantize 3bit", "argument --quantize: invalid choice"),
    ("export-without-merged", None, "%ftpe export saved {work}/out", "Usage: %ftpe export NAME PATH --merged"),
    ("export-a-classifier", None, "%ftpe export saved-probe {work}/out --merged", "classification head"),
    ("export-into-user-folder", lambda ns, w: _user_folder(w), "%ftpe export saved {work}/mine --merged",
     "already holds other files"),
    ("ft-search-space-without-search", None, CELL_FT.format(opts="--space lr=1e-4:1e-2"), "add --search N"),
    ("ft-search-space-unknown", None, CELL_FT.format(opts="--search 2 --space rnk=4,8"), "Did you mean 'rank'"),
    ("ft-search-space-reversed", None, CELL_FT.format(opts="--search 2 --space lr=1e-2:1e-4"), "LOW below HIGH"),
    ("ft-search-space-bad-value", None, CELL_FT.format(opts="--search 2 --space rank=0,4"),
     "--rank must be at least 1"),
    ("ft-search-budget-zero", None, CELL_FT.format(opts="--search 2 --budget-minutes 0"),
     "--budget-minutes must be above 0"),
    ("ft-search-zero", None, CELL_FT.format(opts="--search 0"), "--search must be at least 1"),
    ("curve-repeats-zero", None, CELL_CMP.format(opts="--train rows --sizes 4 --repeats 0"),
     "--repeats must be at least 1"),
    ("ft-search-nproc-with-cv", None, CELL_FT.format(opts="--search 2 --cv 2 --nproc 2"),
     "trains its folds in the kernel"),
    ("curve-sizes-without-train", None, CELL_CMP.format(opts="--sizes 4,8"), "add --train VAR"),
    ("curve-repeats-without-sizes", None, CELL_CMP.format(opts="--train rows --repeats 2"), "give --sizes"),
    ("curve-size-too-big", lambda ns, w: ns.update(pool=[{"text": f"other review {i}", "label": r["label"]}
                                                        for i, r in enumerate(ROWS)]),
     CELL_CMP.format(opts="--train pool --sizes 4,400"), "--sizes 400 is more than the 8 usable examples"),
    ("curve-train-is-eval", None, CELL_CMP.format(opts="--train rows --sizes 4"), "nothing is left to learn from"),
    ("curve-size-not-int", None, CELL_CMP.format(opts="--train rows --sizes 4,many"), "--sizes takes a comma"),
    ("curve-finetune-without-train", None, "%%compare --eval rows\nft: finetune lora " + TEMPLATE,
     "add --train VAR"),
    ("curve-finetune-no-label", None, "%%compare --eval rows --train rows\nft: finetune lora Review: {text}",
     "with {label} where the answer"),
    ("curve-finetune-unknown-key", None, "%%compare --eval rows --train rows\nft: finetune lora epoch=2 " + TEMPLATE,
     "Did you mean 'epochs'"),
    ("curve-finetune-bad-value", None, "%%compare --eval rows --train rows\nft: finetune lora lr=-1 " + TEMPLATE,
     "--lr must be above 0"),
    ("curve-finetune-unknown-method", None, "%%compare --eval rows --train rows\nft: finetune lorra " + TEMPLATE,
     "--method must be one of"),
    ("curve-fewshot-bad-key-value", None, "%%compare --eval rows --train rows\nfs: fewshot fsx k=two",
     "k=two is not a int"),
    # the verdict's options
    ("fewshot-cv-zero", None, CELL_FS.format(opts="--search 2 --cv 0"), "--cv must be at least 1"),
    ("fewshot-cv-more-than-pool", lambda ns, w: ns.update(pool=[{"text": f"other review {i}", "label": r["label"]}
                                                               for i, r in enumerate(ROWS)]),
     "%%fewshot --train pool --eval rows --search 2 --cv 20\nReview: {text}\nSentiment: {label}",
     "--cv 20 needs at least 20 usable examples (there are 8)"),
    ("ft-cv-without-search", None, CELL_FT.format(opts="--cv 3"), "add --search N"),
    ("ft-cv-with-val-split", None, CELL_FT.format(opts="--search 2 --cv 3 --val-split 0.2"), "leave out --val-split"),
    ("curve-budget-without-auto", None, CELL_CMP.format(opts="--train rows --sizes 4 --budget-minutes 1"),
     "add --sizes auto"),
    ("curve-budget-zero", None, CELL_CMP.format(opts="--train rows --sizes auto --budget-minutes 0"),
     "--budget-minutes must be above 0"),
    ("also-without-equals", None, CELL_CMP.format(opts="--also intents"), "--also takes NAME=VAR"),
    ("also-missing-variable", None, CELL_CMP.format(opts="--also intents=nosuch"), "no variable named 'nosuch'"),
    ("also-not-a-task", None, CELL_CMP.format(opts="--also intents=rows"), "the variable must hold"),
    ("study-without-train", None, "%%compare --eval rows --study\nReview: {text}\nSentiment: {label}",
     "add --train VAR"),
    # round 3: options on condition lines that vanished or changed
    ("line-value-quote-not-closed", None,
     "%%compare --eval rows --train rows\nft: finetune lora max-steps=\"30 " + TEMPLATE, "never closed"),
    ("line-space-quote-not-closed", None,
     "%%compare --eval rows --train rows\nft: finetune lora search=2 space=\"lr=1e-4:1e-2 rank=4,8 " + TEMPLATE,
     "never closed"),
    ("line-option-after-template", None,
     "%%compare --eval rows --train rows\nft: finetune lora Review: {text} max-steps=3\\nSentiment: {label}",
     "stands inside the template"),
    ("line-option-capitalised", None, "%%compare --eval rows --train rows\nfs: fewshot fsx K=2",
     "'K' is not an option"),
    ("line-fewshot-option-misspelt", None, "%%compare --eval rows --train rows\nfs: fewshot fsx selct=similar",
     "Did you mean 'select'"),
    # templates that were sent unfilled, calibrations that did nothing, k changed behind the user's back
    ("instructions-field-unknown", None,
     "%%fewshot --train rows --eval rows --allow-overlap --k 1\nAbout {product}.\n\nReview: {text}\nSentiment: {label}",
     "Unknown template variable {product}"),
    ("finetune-instructions-field", None,
     "%%finetune --train rows --name t --max-steps 2\nAbout {product}.\n\nReview: {text}\nSentiment: {label}",
     "which a fine-tune does not fill"),
    ("calibrate-with-metric", None, CELL_FS.format(opts="--k 1 --calibrate --metric exact"),
     "nothing would be calibrated"),
    ("search-k-over-search-pool", lambda ns, w: ns.update(pool=[{"text": f"other {i}", "label": r["label"]}
                                                               for i, r in enumerate(ROWS + ROWS[:2])]),
     "%%fewshot --train pool --eval rows --search 2 --k 9\nReview: {text}\nSentiment: {label}",
     "--k 9 is more than the 8 examples"),
    # labels that went missing
    ("label-key-missing", lambda ns, w: ns.update(rows=ROWS + [{"text": "fine"}]), CELL_FS.format(opts="--k 1"),
     "row 8 has no label"),
    ("csv-label-cell-empty", lambda ns, w: _write(w / "gap.csv", "text,label\ngreat,positive\nfine,\nbad,negative\n"),
     CELL_FS.format(opts="--k 1").replace("--train rows", "--train {work}/gap.csv"), "row 1 has no label"),
    # usage errors read as usage errors
    ("prompt-option-misspelt", None, "%%prompt --temprature 0.5\nhi", "unrecognized arguments"),
    ("fewshot-option-misspelt", None, CELL_FS.format(opts="--kk 1"), "unrecognized arguments"),
    # counts with bounds
    ("repeats-unbounded", None, CELL_CMP.format(opts="--train rows --sizes 4 --repeats 1000"),
     "--repeats must be at least 1 and at most 20"),
    ("samples-unbounded", None, "%%prompt --samples 100000\nhi", "--samples must be at least 1 and at most 100"),
    ("compare-samples-unbounded", None, CELL_CMP.format(opts="--samples 5000"), "at most 100"),
    ("orders-unbounded", None, CELL_FS.format(opts="--orders 100000"), "--orders must be at least 1 and at most"),
    ("fewshot-search-unbounded", None, CELL_FS.format(opts="--search 100000"), "--search must be at least 1 and at"),
    ("ft-epochs-unbounded", None, CELL_FT.format(opts="--epochs 1e9").replace("--max-steps 2 ", ""),
     "--epochs must be above 0 and at most"),
    ("ft-search-unbounded", None, CELL_FT.format(opts="--search 100000"), "--search must be at least 1 and at"),
]


def _files(work: Path) -> dict[str, str]:
    return {str(p.relative_to(work)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(work.rglob("*"))}


def _value(value) -> str:
    """A user variable by value (a DataFrame or list changed in place is a change); functions by identity."""
    try:
        return hashlib.sha1(pickle.dumps(value)).hexdigest()
    except Exception:  # noqa: BLE001 - a lambda or a module cannot be pickled: compare it by identity
        return f"id {id(value)}"


def _state(shell, work: Path, names: list[str]) -> dict:
    session = get_session()
    return {"model": session.source.label if session.loaded else None, "load_id": session.loaded_model.load_id,
            "adapters": list(session.adapters), "active": session.active_adapter, "history": len(session.history),
            "fewshot": list(session.fewshot_configs), "vars": {n: _value(shell.user_ns.get(n)) for n in names},
            "files": _files(work)}


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory, tiny_session):
    """One trained adapter on disk, loaded into every case's session so a case can show it survives."""
    folder = tmp_path_factory.mktemp("adapter")
    tiny_session.finetune(TEMPLATE.replace("\\n", "\n"), ROWS, "saved-src", max_steps=2, batch_size=4, warmup=0)
    tiny_session.save_adapter("saved-src", str(folder / "saved"))
    tiny_session.finetune(TEMPLATE.replace("\\n", "\n"), ROWS, "probe-src", method="probe")
    tiny_session.save_adapter("probe-src", str(folder / "saved-probe"))
    return folder


def assert_survives(shell, capsys, work: Path, cell: str, expected: str) -> None:
    """The three promises for one bad input."""
    names = [n for n in shell.user_ns if not n.startswith("_") and n not in ("In", "Out", "exit", "quit")]
    before = _state(shell, work, names)
    capsys.readouterr()
    result = shell.run_cell(cell)
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert isinstance(result.error_in_exec, UsageError), f"not a one-line error: {result.error_in_exec!r}"
    assert expected in str(result.error_in_exec)
    assert "unexpected" not in str(result.error_in_exec)  # a usage error, not the product's fault
    assert len(lines) <= 3, lines
    assert "Traceback" not in out.out + out.err
    assert _state(shell, work, names) == before
    shell.run_line_magic("ftpe", "status")
    assert "parameters" in capsys.readouterr().out


@pytest.mark.parametrize("case, setup, cell, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(shell, capsys, tmp_path, saved_adapter, case, setup, cell,
                                                   expected):
    work = tmp_path / "work"
    work.mkdir()
    shell.user_ns["rows"] = ROWS
    ns: dict = {}
    if setup:
        setup(ns, work)
    shell.user_ns.update({key: value for key, value in ns.items() if not key.startswith("_config")})
    if "_config_cache" in ns:
        shell.run_line_magic("config", f"Ftpe.cache_dir = {ns['_config_cache']!r}")
    shell.run_line_magic("ftpe", "load")
    shell.run_line_magic("ftpe", f"load-adapter {saved_adapter / 'saved'} --name saved")
    shell.run_line_magic("ftpe", f"load-adapter {saved_adapter / 'saved-probe'} --name saved-probe")
    assert_survives(shell, capsys, work, cell.replace("{work}", str(work)), expected)
