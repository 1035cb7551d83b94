"""Interactive views that leave a static fallback.

A widget view alone shows nothing once the notebook is saved and reopened without its kernel. So
each view is published as one output carrying both the widget and a static HTML rendering of the
same content: a live front end shows the widget, everything else (a saved notebook, nbconvert,
GitHub) shows the HTML.
"""

from __future__ import annotations

from IPython.display import display

from .html import static_sections


def display_tabs(sections: dict[str, str], text: str) -> None:
    """Show ``sections`` as ipywidgets tabs with a static HTML fallback in the same output."""
    fallback = static_sections(sections)
    bundle = {"text/plain": text, "text/html": fallback}
    try:
        import ipywidgets

        tabs = ipywidgets.Tab(children=[ipywidgets.HTML(body) for body in sections.values()])
        tabs.titles = tuple(sections)
        widget_bundle = tabs._repr_mimebundle_() or {}
        bundle.update({key: value for key, value in widget_bundle.items() if key != "text/plain"})
    except ImportError:
        pass
    display(bundle, raw=True)
