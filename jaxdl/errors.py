"""The errors a user can act on. The CLI prints their message in one line and exits with status 2.

They live in this import-light module so that reporting one never loads TensorFlow or JAX.
"""


class JaxdlError(Exception):
    """Base of every error whose message tells the user what to do."""


class ConfigError(JaxdlError, ValueError):
    """A configuration that cannot run. The message names the key and what to do."""


class DatasetNotAvailable(JaxdlError, RuntimeError):
    """The dataset is unknown or not on this machine; the message says how to prepare it."""


class CheckpointError(JaxdlError, RuntimeError):
    """A checkpoint or run directory that cannot be found or read."""


class InputError(JaxdlError, ValueError):
    """An input (e.g. an image given to predict) that cannot be fitted to the model."""


class TransferError(JaxdlError):
    """A pretrained source that is missing, has no checkpoint, or does not fit the new model."""


class WorkdirError(JaxdlError):
    """A workdir that another live run holds, that cannot be written, or that lacks the space checkpoints need."""


class TrainingDiverged(JaxdlError, FloatingPointError):
    """A non-finite loss or gradient with train.on_nonfinite='stop'; the last checkpoint is left as it was."""


class Preempted(JaxdlError):
    """SIGTERM or SIGINT: the run finished its step, saved a checkpoint and stopped; rerunning resumes it."""


class DataError(JaxdlError, ValueError):
    """An example that breaks the data contract (a box outside the image, a mask of the wrong size, an unknown
    class id): the message names the example and the field."""


class UntrustedCode(JaxdlError):
    """A run directory names code from outside the installed packages and the current project; importing it would
    run it. The message names the modules and folders, and the opt-in (`--trust-code`)."""


class MissingExtra(JaxdlError):
    """A feature whose library is an optional extra that is not installed: the message has the pip command."""
