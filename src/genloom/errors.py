"""The exceptions that reach users as a single sentence.

Anything a user can fix (a bad path, an empty corpus, a wrong key or type, a
prompt that is too long, a checkpoint of another family) raises ``UserError``.
The CLI prints its message on one line and exits with status 2; any other
exception is a bug in genloom and keeps its traceback.
"""


class UserError(Exception):
    """An error caused by the user's input, with a message they can act on."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the last complete step was saved (the CLI exits with status 130)."""
