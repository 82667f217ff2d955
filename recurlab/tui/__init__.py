"""recurlab's terminal UI: attach to run directories, watch curves, look inside the recurrence.

    recurlab tui                      # the runs in ./runs
    recurlab tui runs/cpu-1122-1015   # open one run's curves directly
    python -c "from recurlab.tui import RecurlabApp; RecurlabApp('runs').run()"

Screens (keys 1-6): Runs, Curves, Inspector, Generate, Sweep, Eval; `?` shows a screen's keys, ctrl+p
the command palette. The Runs and Curves screens import no torch; the model screens load it in
background workers. The app (and textual) is imported on first use of `RecurlabApp`, so that
the pure helpers in this package (`recurlab.tui.series`) serve `recurlab plot` without textual.
"""

__all__ = ["RecurlabApp"]


def __getattr__(name: str):
    if name == "RecurlabApp":
        from recurlab.tui.app import RecurlabApp  # textual: loaded only when this runs

        return RecurlabApp
    raise AttributeError(f"module 'recurlab.tui' has no attribute {name!r}")
