"""Which recipe trains which family: an explicit dict, so a config's name greps to its code."""

from genloom.train import lm

RECIPES = {
    "rnnlm": lm.train,
}
