"""recurlab's terminal UI: attach to run directories, watch curves, look inside the recurrence.

    recurlab tui                      # the runs in ./runs
    recurlab tui runs/cpu-1122-1015   # open one run's curves directly
    python -c "from recurlab.tui import RecurlabApp; RecurlabApp('runs').run()"

Screens (keys 1-6): Runs, Curves, Inspector, Generate, Sweep, Eval; `?` shows a screen's keys, ctrl+p
the command palette. The Runs and Curves screens import no torch; the model screens load it in
background workers. What the screens read from run directories is `recurlab.runlog`.
"""

from recurlab.tui.app import RecurlabApp

__all__ = ["RecurlabApp"]
