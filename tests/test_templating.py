import pytest

from ftpe_magics import FtpeError
from ftpe_magics.engine.prompting.templates import fill, template_fields, unescape_newlines


def test_fills_names_from_namespace():
    assert fill("Review: {text} ({n} words)", {"text": "great", "n": 1}) == "Review: great (1 words)"


def test_double_braces_are_literal_and_json_is_untouched():
    filled = fill('{{name}} {"a": [1, 2]} {x + 1} {1, 2} {name}', {"name": "v"})
    assert filled == '{name} {"a": [1, 2]} {x + 1} {1, 2} v'


def test_unknown_name_is_one_line_with_closest_names():
    with pytest.raises(FtpeError) as info:
        fill("Review: {revew}", {"review": "x", "reviews": [], "_hidden": 1})
    message = str(info.value)
    assert "{revew}" in message and "'review'" in message and "\n" not in message
    assert "_hidden" not in message


def test_templates_never_evaluate_code():
    namespace = {"x": "safe"}
    assert fill("{x.__class__} {__import__('os')}", namespace) == "{x.__class__} {__import__('os')}"
    with pytest.raises(FtpeError):
        fill("{__import__}", namespace)


def test_fields_in_order_and_skip_keeps_a_field_for_later():
    assert template_fields("{b} {a} {{c}} {b}") == ["b", "a"]
    assert fill("Review: {text}\nSentiment: {label}", {"text": "ok"}, skip=frozenset({"label"})) == (
        "Review: ok\nSentiment: {label}")


def test_one_line_specs_unescape_newlines():
    assert unescape_newlines(r"a\nb \\n") == "a\nb \\n"
