"""Every user-facing error type, in a module that imports nothing of recurlab (nor torch or yaml).

    from recurlab.errors import UserError, ConfigError
    try:
        plan_run("runs", "tiny", ["train.lr=-1"])
    except UserError as exc:          # any one-line mistake of the user's
        print(f"error: {exc}")        # ConfigError: train.lr must be > 0 ...

Each is a `UserError` (itself a ValueError), whose message is one line that says what is wrong and
how to fix it: the CLI prints it and exits with code 2, the foreground worker reports it as the
run's one line, the TUI shows it as a notice. An exception that is not a UserError is a bug and
keeps its traceback. The modules that raise these import them from here (and re-export the ones
they always named, e.g. `recurlab.config.ConfigError`). TrainingDiverged is a run's failure, not
bad input: a RuntimeError, recorded in the run's status (exit code 1).
"""

EXIT_BAD_INPUT = 2  # a UserError at the command line: one `error:` line on stderr and this code, nothing written


class UserError(ValueError):
    """A mistake in what the user asked for or pointed at; the message is one line."""


class ConfigError(UserError):
    """A profile or a key=value override that is unknown, of the wrong type or out of range."""


class RunError(UserError):
    """A run name or run directory that cannot be used: missing, ambiguous, unreadable, busy."""


class FilterError(RunError):
    """A run filter (`recurlab runs --where`, `/` on the Runs screen) that does not parse."""


class WorkerStartError(RunError):
    """The worker process could not be started (the run is marked failed)."""


class UnknownTaskError(UserError):
    """An embedded task or level that does not exist."""


class SplitError(UnknownTaskError):
    """A level with no instance in the requested split."""


class VocabError(UserError):
    """Text with characters outside the vocabulary."""


class InferenceError(UserError):
    """Bad generation or inspection arguments (r = 0, an unknown exit criterion, ...)."""


class EvalTaskError(InferenceError):
    """An evaluation task that cannot be used: unknown, rejected by lm-eval, or its data unreadable."""


class DataError(UserError):
    """A data source that cannot be read: no network, a missing field, an empty result."""


class CheckpointError(UserError):
    """A missing or corrupt checkpoint."""


class DeviceError(UserError):
    """A device that is not cpu, cuda or cuda:N, or one this machine does not have."""


class ModelFormatError(UserError):
    """A model folder of a different architecture, missing shards or mismatched shapes."""


class FigureError(UserError):
    """A figure that cannot be made: an unknown kind, a run with nothing to plot, an unwritable
    output folder, matplotlib missing (`pip install 'recurlab[plot]'`)."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite: the run stops as failed (exit 1), its last
    checkpoint kept as it was. Not a user error of the command line: the run itself failed."""


class ComparisonError(UserError):
    """One of a comparison's runs failed; the message names the run and how to read its log."""


class TuiArgsError(UserError):
    """A path argument that is not what `recurlab tui` needs; the message says which and why."""
