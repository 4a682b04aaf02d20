"""The one training loop, its schedules and plots, and the per-family recipes that call it.

The package is callable, so that ``genloom.train(config)`` runs a recipe while
``genloom.train.loop`` stays importable: a function of that name beside the
package would be shadowed by the package as soon as anything imports from it.
This module imports no torch until it is called.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, config, overrides=None, resume=False, device=None):
        """Run a recipe: a YAML path, a recipe dict or a ``RunConfig``; see ``genloom.api.train``."""
        from genloom.api import train as run_recipe

        return run_recipe(config, overrides=overrides, resume=resume, device=device)


sys.modules[__name__].__class__ = _CallablePackage
