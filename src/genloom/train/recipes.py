"""Which recipe trains which family: an explicit dict, so a config's name greps to its code."""

from genloom.train import gan, lm, seq2seq, vae

RECIPES = {
    "rnnlm": lm.train,
    "gpt": lm.train,
    "bert": lm.train,
    "seq2seq": seq2seq.train,
    "transformer_seq2seq": seq2seq.train,
    "vae": vae.train,
    "gan": gan.train,
}
