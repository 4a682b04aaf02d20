"""The per-family recipes: each reads its data, opens the run folder and calls the one training loop
(``training/loop.py``). ``RECIPES`` says which recipe trains which family: an explicit dict, so a config's
name greps to its code."""

from genloom.recipes import gan, lm, seq2seq, vae

RECIPES = {
    "rnnlm": lm.train,
    "gpt": lm.train,
    "bert": lm.train,
    "seq2seq": seq2seq.train,
    "transformer_seq2seq": seq2seq.train,
    "vae": vae.train,
    "gan": gan.train,
}
