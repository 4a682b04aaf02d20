"""Responsible generation: personal-data redaction and the offensive-language screen, for inputs and outputs."""

from genloom.safety.redact import KINDS, STYLES, StreamRedactor, find_personal_data, redact
from genloom.safety.screen import BLOCKED, MODES, StreamScreen, offensive_spans, screen
from genloom.safety.stream import Finding, StreamFilter

__all__ = ["KINDS", "STYLES", "MODES", "BLOCKED", "Finding", "StreamFilter", "StreamRedactor", "StreamScreen",
           "find_personal_data", "redact", "offensive_spans", "screen"]
