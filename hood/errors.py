"""Known failures, each rendered by the CLI as one line that names the problem and the fix.

Everything the user can cause (bad config, missing data, a wrong checkpoint, an absent GPU)
raises a subclass of :class:`HoodError`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HoodError(Exception):
    """A failure the user can fix; ``str(err)`` is the whole message shown to them."""

    exit_code: int = 2


class DiskError(HoodError):
    """A write failed on the machine's side (disk full, no permission): an operating-system error, exit 1."""

    exit_code = 1


class ConfigError(HoodError):
    """The resolved configuration is invalid (unknown key, wrong type, impossible value)."""


class DetectorParameterError(HoodError, ValueError):
    """A detector parameter outside its range, said in the detector's own terms (``k must be ...``); a
    ValueError too, which is what the Python API promises for a bad argument.

    The detector does not know where the value came from; whoever set it from a config key (the jobs
    layer) names that key in front of the message.
    """

    def __init__(self, detector: str, param: str, problem: str) -> None:
        super().__init__(f"{param} {problem}")
        self.detector, self.param = detector, param


class DataError(HoodError):
    """A data set cannot be read: missing, empty, or not what it claims to be."""


class DatasetMissingError(DataError):
    """Named data sets are not under the data root; the message names one ``hood download`` for all of them."""

    def __init__(self, names: str | list[str], root: str) -> None:
        self.names = [names] if isinstance(names, str) else list(names)
        self.name = self.names[0]
        quoted = ", ".join(f"'{n}'" for n in self.names)
        what = f"data set {quoted} is" if len(self.names) == 1 else f"data sets {quoted} are"
        where = "it lives" if len(self.names) == 1 else "they live"
        super().__init__(
            f"{what} not installed under {root}; run `hood download {' '.join(self.names)}` "
            f"(or pass --data-root / set HOOD_DATA to where {where})"
        )


class CheckpointError(HoodError):
    """A checkpoint is unreadable, unsafe, or does not match what it is loaded into."""


class DeviceError(HoodError):
    """The requested device is not available on this machine."""


class TrainingDivergedError(HoodError):
    """Loss became NaN or inf; the last good checkpoint is kept."""


class RunError(HoodError):
    """A run directory is missing, incomplete, or does not hold what a command needs."""
