"""Applications built on the models: the demo, and later translation, summarization, detection."""
