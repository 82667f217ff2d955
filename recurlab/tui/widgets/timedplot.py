"""A PlotextPlot that remembers how long its last render took (plotext builds the whole figure as
text on every render: that is the cost the Curves screen's redraw throttle spaces out).

    plot = TimedPlot(id="curves-plot"); ...; plot.render_seconds, plot.renders

Its own module so that the Curves screen can import plotext after its first frame.
"""

from __future__ import annotations

import time

from textual_plotext import PlotextPlot


class TimedPlot(PlotextPlot):
    render_seconds = 0.0
    renders = 0

    def render(self):
        t0 = time.perf_counter()
        out = super().render()
        self.render_seconds = time.perf_counter() - t0
        self.renders += 1
        return out
