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


# ``genloom.train`` is the subpackage genloom/train/ (loop, recipes) and is also
# callable: ``genloom.train("configs/x.yaml")`` runs a recipe (see train/__init__.py).
from genloom import train  # noqa: E402

__all__ = ["load", "train", "__version__"]
