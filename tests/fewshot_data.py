"""A small labelled pool and a balanced eval set the tiny model can be prompted with (calibration, search)."""

TEMPLATE = "Review: {text}\nSentiment: {label}"
POOL = ([{"text": f"the movie was great {i}", "label": "positive"} for i in range(20)]
        + [{"text": f"a terrible film , boring {i}", "label": "negative"} for i in range(20)])
# balanced: the true share of each label is one half
EVAL = [{"text": text, "label": label} for text, label in [("i loved it", "positive"), ("boring and long",
                                                                                       "negative")] * 10]
