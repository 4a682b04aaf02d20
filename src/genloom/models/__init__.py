"""Model families. ``FAMILIES`` maps a config's ``family`` to its module; grep the name to find the code."""

from genloom.models import rnnlm

FAMILIES = {
    "rnnlm": rnnlm,
}
