"""Model families. ``FAMILIES`` maps a config's ``family`` to its module; grep the name to find the code."""

from genloom.models import rnnlm, seq2seq, transformer_seq2seq

FAMILIES = {
    "rnnlm": rnnlm,
    "seq2seq": seq2seq,
    "transformer_seq2seq": transformer_seq2seq,
}
