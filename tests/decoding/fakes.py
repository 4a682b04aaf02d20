"""A scripted decoder (after fairseq's tests/utils.py): next-token probabilities come from a table."""

import math

import torch

PAD, BOS, EOS, A, B = 0, 1, 2, 3, 4
VOCAB = 5


class ScriptedDecoder(torch.nn.Module):
    """P(next | step t, last token) from ``table``; unspecified tokens get probability 0.

    ``table[t]`` maps the last token (or None for any) to a dict of token → probability, where
    t is the number of tokens fed so far minus one (so t = 0 right after BOS).
    """

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the engine a device
        self.calls = []

    def init_state(self, batch_size, context=None):
        return torch.zeros(batch_size, dtype=torch.long)  # (B,) tokens fed so far

    def step(self, tokens, state):
        self.calls.append(tokens.clone())
        state = state + tokens.size(1)
        logits = torch.full((tokens.size(0), VOCAB), float("-inf"))
        for row, (count, last) in enumerate(zip(state.tolist(), tokens[:, -1].tolist())):
            probs = self.table[min(count - 1, len(self.table) - 1)]
            probs = probs.get(last, probs.get(None))
            for token, p in probs.items():
                logits[row, token] = math.log(p)
        return logits, state

    def reorder_state(self, state, index):
        return state.index_select(0, index)


# Greedy takes a, a, EOS; beam search finds b, EOS, which is more likely.
TABLE = [
    {None: {A: 0.6, B: 0.4}},
    {A: {A: 0.36, B: 0.34, EOS: 0.30}, B: {EOS: 0.9, A: 0.05, B: 0.05}, None: {EOS: 1.0}},
    {None: {EOS: 0.98, A: 0.01, B: 0.01}},
]
