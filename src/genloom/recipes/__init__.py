"""The per-family recipes: each reads its data, opens the run folder and calls the one training loop
(``training/loop.py``). ``RECIPES`` says which recipe trains which family: an explicit dict, so a config's
name greps to its code."""

from genloom.recipes import gan, lm, seq2seq, vae

# What ``genloom train`` and ``genloom validate`` check before anything is trained: the same functions that
# each recipe calls first.
CHECKS = {
    "rnnlm": lm.check,
    "gpt": lm.check,
    "bert": lm.check,
    "seq2seq": seq2seq.check,
    "transformer_seq2seq": seq2seq.check,
    "vae": vae.check,
    "gan": gan.check,
}

RECIPES = {
    "rnnlm": lm.train,
    "gpt": lm.train,
    "bert": lm.train,
    "seq2seq": seq2seq.train,
    "transformer_seq2seq": seq2seq.train,
    "vae": vae.train,
    "gan": gan.train,
}
