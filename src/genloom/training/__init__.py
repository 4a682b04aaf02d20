"""The one training loop (``loop.py``), its optimizers and learning-rate schedules (``optim.py``), and
data-parallel helpers (``distributed.py``). The per-family recipes that call the loop are in ``recipes/``."""
