"""genloom: train, evaluate, use and serve neural text generation models.

    >>> import genloom
    >>> model = genloom.load("runs/demo")               # doctest: +SKIP
    >>> for piece in model.generate("the cat", max_new_tokens=20):  # doctest: +SKIP
    ...     print(piece, end="")

``genloom.load`` and ``genloom.train`` are ``genloom.api.load`` and ``genloom.api.train``. They are
imported when first used, so that ``import genloom.config`` (configuration tools, ``--help``) does not
import torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "train", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("load", "train"):
        from genloom import api

        return getattr(api, name)
    raise AttributeError(f"module 'genloom' has no attribute {name!r}")
