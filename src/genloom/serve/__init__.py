"""``genloom serve``: the models behind an OpenAI-compatible HTTP API with continuous batching, and a playground."""

from genloom.serve.app import ServeSettings, check_settings, create_app, from_environment, load_named

__all__ = ["ServeSettings", "check_settings", "create_app", "from_environment", "load_named"]
