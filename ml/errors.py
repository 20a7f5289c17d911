"""The ml package's exceptions (no torch).

``PermanentError`` marks a failure that a retry cannot mend (bad data, a diverging run, an invalid
job): ``ml.job`` exits 3 on it. The ``Step*`` errors are what ``ml.child.run_job`` raises in the
parent for the child's outcome.
"""

from __future__ import annotations


class PermanentError(Exception):
    """A failure that the same inputs will always reproduce."""

    @property
    def message(self) -> str:
        return str(self)


class DataError(PermanentError):
    """The data cannot be read or is not valid for training."""


class TrainingDiverged(PermanentError):
    """The training loss became non-finite or grew past the divergence bounds."""


class InvalidJob(PermanentError):
    """A job, its hyperparameters or its artifact inputs are malformed."""


class StepError(Exception):
    """A child step failed; the subclass says whether retrying can help."""


class PermanentStepError(StepError):
    """The child reported a permanent failure (exit code 3)."""


class TransientStepError(StepError):
    """The child failed in a way a retry may not repeat (a crash, exit code 1, a signal)."""


class StepTimeout(TransientStepError):
    """The child ran past its timeout and was killed (with its process group)."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid
