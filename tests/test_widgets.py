from ftpe_magics.display import widgets


def test_tabs_carry_widget_view_and_static_fallback(monkeypatch):
    published = []
    monkeypatch.setattr(widgets, "display", lambda bundle, raw: published.append(bundle))
    widgets.display_tabs({"Summary": "<table><tr><td>zero</td></tr></table>", "Errors": "<p>none</p>"}, "plain")
    (bundle,) = published
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == "plain"
    fallback = bundle["text/html"]
    assert "<summary><b>Summary</b></summary>" in fallback and "<td>zero</td>" in fallback and "Errors" in fallback
    assert fallback.index("Summary") < fallback.index("Errors")
