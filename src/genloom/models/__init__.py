"""Model families. ``FAMILIES`` maps a config's ``family`` to its module; grep the name to find the code."""

from genloom.models import bert, gan, gpt, rnnlm, seq2seq, transformer_seq2seq, vae

FAMILIES = {
    "rnnlm": rnnlm,
    "gpt": gpt,
    "bert": bert,
    "seq2seq": seq2seq,
    "transformer_seq2seq": transformer_seq2seq,
    "vae": vae,
    "gan": gan,
}
