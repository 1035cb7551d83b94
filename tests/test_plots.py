import importlib

import matplotlib

import ftpe_magics.display.plots as plots


def test_plots_leave_the_users_matplotlib_backend_alone():
    previous = matplotlib.get_backend()
    try:
        matplotlib.use("svg")
        importlib.reload(plots)
        png = plots.accuracy_bars(["a", "b"], [0.5, 0.7], [0.4, 0.6], [0.6, 0.8])
        assert png.startswith(b"\x89PNG")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)
