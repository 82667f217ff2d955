"""Reading run directories as they grow: what the TUI's Runs and Curves screens and the curve
figures show. No Textual and no torch; `watch` needs no numpy either (the Runs screen's first frame).

    watch.RunsWatch(runs_dir).poll()           # every run's state, step, loss and loss sparkline
    metrics.MetricsSource(run).update()        # one run's metrics.jsonl, read incrementally
    series.RunSeries, downsample, ema          # metric columns and how curves are thinned and smoothed
    cache.SeriesCache(run.metrics_path)        # the derived metrics.jsonl.derived.npz beside the log

It reads through the run-directory contract (`recurlab.rundir`) and imports nothing else of recurlab.
"""
