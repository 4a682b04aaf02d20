"""genloom: train, evaluate, use and serve neural text generation models.

    >>> import genloom
    >>> model = genloom.load("runs/demo")               # doctest: +SKIP
    >>> for piece in model.generate("the cat", max_new_tokens=20):  # doctest: +SKIP
    ...     print(piece, end="")
"""

__version__ = "0.1.0"


def load(path, device=None):
    """Load a checkpoint directory; see ``genloom.api.load``."""
    from genloom.api import load as _load

    return _load(path, device=device)


def train(config, overrides=None, resume=False, device=None):
    """Run a YAML recipe (a path) or a ``RunConfig``; see ``genloom.api.train``."""
    from genloom.api import train as _train

    return _train(config, overrides=overrides, resume=resume, device=device)


__all__ = ["load", "train", "__version__"]
