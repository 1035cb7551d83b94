import json

import datasets
import pandas as pd
import pytest

from ftpe_magics import FtpeError
from ftpe_magics.engine.data.examples import load_examples

ROWS = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}, {"text": "fine", "label": 1}]


def test_every_input_shape_gives_the_same_examples(tmp_path):
    pd.DataFrame(ROWS).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(ROWS).to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    sources = [pd.DataFrame(ROWS), datasets.Dataset.from_list(ROWS), ROWS, str(tmp_path / "d.csv"),
               str(tmp_path / "d.tsv"), str(tmp_path / "d.jsonl")]
    for source in sources:
        data = load_examples(source, label_names="0=negative,1=positive")
        assert data.texts == ["good", "bad", "fine"]
        assert data.labels == ["positive", "negative", "positive"]
        assert data.label_set == ["negative", "positive"]


def test_missing_column_empty_set_and_unknown_label_are_one_line_errors():
    with pytest.raises(FtpeError, match=r"no column 'sentence' \(columns: text, label\).*--input-col"):
        load_examples(ROWS, input_col="sentence")
    with pytest.raises(FtpeError, match="empty"):
        load_examples([])
    with pytest.raises(FtpeError, match=r"label '0'.*not in the label set"):
        load_examples(ROWS, labels="1,2")
    with pytest.raises(FtpeError, match="VALUE=WORD"):
        load_examples(ROWS, label_names="0negative")
    with pytest.raises(FtpeError, match="No data file"):
        load_examples("missing.csv")
