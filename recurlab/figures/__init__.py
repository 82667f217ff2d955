"""Publication figures from run directories: the same figure specs serve `recurlab plot` and the
TUI's ctrl+s. Building a spec needs no matplotlib; rendering needs the extra `recurlab[plot]`,
imported only when a figure is drawn.

    recurlab plot curves cpu-demo cpu-fixed --metric eval-acc --smooth 0.05
    recurlab plot sweep cpu-demo --y acc --csv
    recurlab plot sweep-heatmap cpu-demo
    recurlab plot sweep cpu-demo --source evals        # from `recurlab eval`
    recurlab plot exits cpu-demo --groups 'level1-*,level4-*'
    recurlab plot heatmap cpu-demo --value flips        # the newest trace in traces/
    recurlab plot pca cpu-demo --token 19
    recurlab plot wavefront cpu-demo

    from recurlab.figures import sweep_figure, save_figure, run_figures_dir
    save_figure(sweep_figure([run]), run_figures_dir(run), csv=True)
"""

from recurlab.figures.curves import METRIC_NAMES, curves_figure, load_series, run_steps
from recurlab.figures.save import run_figures_dir, save_figure, write_new
from recurlab.figures.spec import FigureError, HeatFigure, HistFigure, Line, LineFigure, csv_text
from recurlab.figures.sweeps import sweep_figure
from recurlab.figures.traces import exits_figure, heatmap_figure, load_trace, pca_figure

__all__ = [
    "METRIC_NAMES", "FigureError", "HeatFigure", "HistFigure", "Line", "LineFigure", "csv_text", "curves_figure",
    "exits_figure", "heatmap_figure", "load_series", "load_trace", "pca_figure", "run_figures_dir", "run_steps", "save_figure",
    "sweep_figure", "write_new",
]
