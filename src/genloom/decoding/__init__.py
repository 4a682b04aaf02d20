"""One decoding engine for every generator: the settings (``config.py``, no torch), logits processors
(``processors.py``), and greedy, sampling and beam search with the streaming ``generate`` (``generate.py``)."""
