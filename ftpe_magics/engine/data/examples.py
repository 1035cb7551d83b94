"""Labelled data in, whatever shape the user has it in.

A DataFrame, a ``datasets.Dataset``, a list of dicts or a CSV/TSV/JSONL path all become one
:class:`Examples` with the input text, the label as a word (``--label-names 0=negative``) and the
full rows, so templates can use any column. ``--over`` rows (strings, dicts, a DataFrame) come
through :func:`as_rows` here too.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FtpeError, check_text


def as_rows(value: Any, what: str = "--over") -> list[dict]:
    """A list of strings becomes ``{"item": s}`` rows; dicts and DataFrame rows keep their fields."""
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        rows = value.to_dict("records")
    elif hasattr(value, "column_names") and hasattr(value, "to_list"):  # datasets.Dataset
        rows = value.to_list()
    elif isinstance(value, (list, tuple)):
        rows = [item if isinstance(item, dict) else {"item": item} for item in value]
        if any(not isinstance(item, (dict, str, int, float)) for item in value):
            raise FtpeError(f"{what} takes a list of strings, a list of dicts or a DataFrame.")
    else:
        raise FtpeError(f"{what} takes a list of strings, a list of dicts or a DataFrame, not {type(value).__name__}.")
    if not rows:
        raise FtpeError(f"{what} is empty: there are no rows to run.")
    return [{str(key): val for key, val in row.items()} for row in rows]


@dataclass
class Examples:
    rows: list[dict]
    input_col: str
    label_col: str
    labels: list[str]
    label_set: list[str]
    notices: list[str] = field(default_factory=list)  # what was read differently from the file, for the user

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def texts(self) -> list[str]:
        return [str(row[self.input_col]) for row in self.rows]

    def subset(self, indices: list[int]) -> Examples:
        return Examples([self.rows[i] for i in indices], self.input_col, self.label_col,
                        [self.labels[i] for i in indices], self.label_set)

    def head(self, count: int) -> Examples:
        return self.subset(list(range(min(count, len(self)))))


def parse_label_names(spec: str | dict | None) -> dict[str, str]:
    """``"0=negative,1=positive"`` (or a dict) to a mapping from raw label values to words."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        return {str(key): str(value) for key, value in spec.items()}
    mapping = {}
    for part in spec.split(","):
        if "=" not in part:
            raise FtpeError(f"--label-names takes VALUE=WORD pairs separated by commas, e.g. 0=negative,1=positive; "
                            f"got {part!r}.")
        key, value = part.split("=", 1)
        mapping[key.strip()] = value.strip()
    return mapping


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise FtpeError(f"{path.name}, line {number}: not valid JSON ({error.msg}). Fix or remove that line.") \
                from None
        if not isinstance(rows[-1], dict):
            raise FtpeError(f"{path.name}, line {number}: a JSONL data file holds one object per line, "
                            '{"text": ..., "label": ...}.')
    return rows


def _read_delimited(path: Path) -> list[dict]:
    import pandas as pd

    tsv = path.suffix == ".tsv"
    try:
        frame = pd.read_csv(path, sep="\t" if tsv else ",", keep_default_na=False, dtype=str, quoting=3 if tsv else 0)
    except pd.errors.EmptyDataError:
        raise FtpeError(f"{path.name} is empty: a data file needs a header row and examples.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        detail = str(error).strip().splitlines()[-1]
        raise FtpeError(f"{path.name} could not be read as {'TSV' if tsv else 'CSV'}: {detail}. Fix that row "
                        "(a stray separator or quote), or load it yourself into a DataFrame.") from None
    return frame.to_dict("records")


def read_table(path: str | Path) -> list[dict]:
    """Rows of a CSV, TSV or JSONL file; a parser error is one line naming the file and the line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FtpeError(f"No data file at {path}.")
    if path.suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if path.suffix not in (".csv", ".tsv", ".txt"):
        raise FtpeError(f"Cannot read {path.name}: use a .csv, .tsv or .jsonl file, a DataFrame or a list of dicts.")
    return _read_delimited(path)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_inputs(rows: list[dict], input_col: str, what: str) -> None:
    for number, row in enumerate(rows):
        value = row.get(input_col)
        if _missing(value):
            raise FtpeError(f"{what}: row {number} has no text in column {input_col!r} (NaN or None). Drop such "
                            f"rows first, e.g. df.dropna(subset=[{input_col!r}]).")
        if isinstance(value, str):
            check_text(value, f"{what}: row {number}")


_ABSENT = object()  # a row without the label key at all


def _label_word(value: Any, names: dict[str, str], number: int, what: str, label_col: str,
                required: bool = True) -> str:
    if not required and (value is _ABSENT or value == ""):  # a generation task's reference may be empty text
        return ""
    if value is _ABSENT or _missing(value) or (isinstance(value, str) and not value.strip()):
        kind = "no key" if value is _ABSENT else "an empty cell" if isinstance(value, str) else "NaN or None"
        raise FtpeError(f"{what}: row {number} has no label in column {label_col!r} ({kind}). Drop such rows "
                        f"first, or give each row its label.")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a column of integers with a gap reads as floats: 1.0 is the label 1
    raw = str(value)
    return names.get(raw, names.get(raw.strip(), raw)).strip()


def _label_words(rows: list[dict], label_col: str, label_names: str | dict | None, what: str,
                 notices: list[str], required: bool = True) -> list[str]:
    names = parse_label_names(label_names)
    raw = [row.get(label_col, _ABSENT) for row in rows]
    words = [_label_word(value, names, number, what, label_col, required) for number, value in enumerate(raw)]
    floats = [value for value in raw if isinstance(value, float)]
    if floats:
        notices.append(f"{what}: labels in {label_col!r} were floats (e.g. {floats[0]!r}); whole numbers were read "
                       "as integers (1.0 is the label 1).")
    padded = sorted({str(value) for value in raw if isinstance(value, str) and value != value.strip()})
    if padded:
        notices.append(f"{what}: spaces around labels were removed ({padded[0]!r} is {padded[0].strip()!r}).")
    return words


def load_examples(source: Any, input_col: str = "text", label_col: str = "label", labels: str | list | None = None,
                  label_names: str | dict | None = None, what: str = "data", require_labels: bool = True) -> Examples:
    """Normalise ``source`` and check its columns and labels, with one-line errors naming the problem."""
    if isinstance(source, Examples):
        return source
    rows = read_table(source) if isinstance(source, (str, Path)) else as_rows(source, what)
    if not rows:
        raise FtpeError(f"{what} is empty: there are no examples.")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column, option in ((input_col, "--input-col"), (label_col, "--label-col")):
        if column == label_col and not require_labels and column not in columns:
            continue
        if column not in columns:
            raise FtpeError(f"{what} has no column {column!r} (columns: {', '.join(map(str, columns))}). "
                            f"Name the right one with {option}.")
    _check_inputs(rows, input_col, what)
    notices: list[str] = []
    words = _label_words(rows, label_col, label_names, what, notices, require_labels) if label_col in columns \
        else [""] * len(rows)
    if labels:
        label_set = [label.strip() for label in labels.split(",")] if isinstance(labels, str) else list(labels)
        outside = sorted(set(words) - set(label_set))
        if outside and require_labels:
            raise FtpeError(f"{what} has label {outside[0]!r}, which is not in the label set {label_set}. "
                            "Fix --labels or map values with --label-names.")
    else:
        label_set = sorted(set(words), key=_natural_key)
    return Examples(rows, input_col, label_col, words, label_set, notices)


def share_label_set(first: Examples, second: Examples, labels: str | list | None) -> None:
    """Give both sets one label set (the union, unless the user named it), so a label seen in only one counts."""
    if not labels:
        first.label_set = second.label_set = sorted(set(first.label_set) | set(second.label_set), key=_natural_key)


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def normalise_text(text: str) -> str:
    """Text compared for leakage: lower case, no punctuation, single spaces."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())
