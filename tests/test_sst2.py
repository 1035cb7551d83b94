"""Integration: prompting conditions on real SST-2 data with the default model."""

import pytest

pytestmark = pytest.mark.integration

NAMES = "0=negative,1=positive"


def test_zero_shot_accuracy_on_first_200_dev_rows(default_session, sst2_dir):
    result = default_session.compare(r"zero: prompt Review: {text}\nSentiment:", str(sst2_dir / "dev.tsv"),
                                     label_names=NAMES, limit=200)
    zero = result.conditions[0]
    assert zero.n == 200
    assert zero.accuracy >= 0.70


def test_four_shot_from_train_on_first_200_dev_rows(default_session, sst2_dir):
    result = default_session.fewshot("Review: {text}\nSentiment: {label}", str(sst2_dir / "train.tsv"),
                                     str(sst2_dir / "dev.tsv"), k=4, select="balanced", label_names=NAMES, limit=200,
                                     name="sst2-fs4")
    assert result.conditions[0].accuracy >= 0.70
    assert result.conditions[0].extra["overlap"] == 0
