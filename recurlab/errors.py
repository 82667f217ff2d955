"""The user-facing error types, gathered without importing torch.

Each is a ValueError subclass whose message is one line that says what is wrong and how to fix
it; the CLI prints it and exits with code 2, the TUI shows it as a notice.
"""

from recurlab.config import ConfigError
from recurlab.rundir import RunError
from recurlab.tasks import UnknownTaskError, VocabError


class InferenceError(ValueError):
    """Bad generation or inspection arguments (r = 0, an unknown exit criterion, ...)."""


class DataError(ValueError):
    """A data source that cannot be read: no network, a missing field, an empty result."""


class CheckpointError(ValueError):
    """A missing or corrupt checkpoint."""


class DeviceError(ValueError):
    """A device that is not cpu, cuda or cuda:N, or one this machine does not have."""


class ModelFormatError(ValueError):
    """A model folder of a different architecture, missing shards or mismatched shapes."""


class FigureError(ValueError):
    """A figure that cannot be made: an unknown kind, a run with nothing to plot, an unwritable
    output folder, matplotlib missing (`pip install 'recurlab[plot]'`)."""


USER_ERRORS = (ConfigError, RunError, UnknownTaskError, VocabError, InferenceError, DataError, CheckpointError, ModelFormatError,
               DeviceError, FigureError)
