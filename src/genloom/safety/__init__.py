"""Responsible generation: personal-data redaction and the offensive-language screen, for inputs and outputs."""

from genloom.safety.redact import KINDS, STYLES, Finding, StreamRedactor, find_personal_data, redact

__all__ = ["KINDS", "STYLES", "Finding", "StreamRedactor", "find_personal_data", "redact"]
