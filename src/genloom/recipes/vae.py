"""The VAE recipe: the language-model data pipeline (whole sentences), the shared loop, and at every
evaluation the latent figures (KL, mutual information, active units) that show posterior collapse."""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from genloom.config import DataConfig, RunConfig, from_dict
from genloom.data.batching import Batch
from genloom.errors import UserError
from genloom.models.vae import TextVAE, latent_report
from genloom.recipes.lm import check, encode_texts, lm_batches, prepare
from genloom.recipes.runs import build_and_fit
from genloom.training import distributed
from genloom.training.loop import evaluation_rng

COLLAPSE_KL = 0.1  # nats per sentence


def collapse_warning(figures: dict[str, float]) -> str | None:
    """A plain-words warning when the posterior has collapsed onto the prior, else None."""
    if figures["kl"] < COLLAPSE_KL and figures["active_units"] == 0:
        return (f"warning: posterior collapse: KL {figures['kl']:.3f} nats per sentence and no active latent unit; "
                "the decoder ignores z. Try KL annealing over more steps, word dropout, free bits or aggressive "
                "encoder updates (see the model options).")
    return None


def make_report(valid_batches: list[Batch], device: torch.device):
    """The recipe's per-evaluation report: latent figures on the validation data, a collapse warning, and the
    end of the aggressive phase once the mutual information stops rising (He et al. 2019)."""

    def report(model: TextVAE) -> dict[str, Any]:
        figures = latent_report(model, valid_batches, device)
        warning = collapse_warning(figures)
        if warning and distributed.rank() == 0:
            tqdm.write(warning)
        if bool(model.aggressive_phase):
            if figures["mutual_info"] <= float(model.last_mutual_info):
                model.aggressive_phase.fill_(False)
                if distributed.rank() == 0:
                    tqdm.write(f"aggressive encoder updates end at update {int(model.updates)}: "
                               f"the mutual information stopped rising ({figures['mutual_info']:.3f} nats).")
            model.last_mutual_info.fill_(figures["mutual_info"])
        return {"sentence_elbo": figures["elbo"], "sentence_kl": figures["kl"], "mutual_info": figures["mutual_info"],
                "active_units": figures["active_units"], "aggressive": bool(model.aggressive_phase)}

    return report


def train(run: RunConfig, resume: bool = False, device: str | None = None) -> dict[str, Any]:
    """Run a VAE recipe end to end and return its summary."""
    check(run, resume, device)
    lm = prepare(run, resume, device)
    if lm.start.model_config.aggressive and distributed.world_size() > 1:
        raise UserError("aggressive encoder updates leave the decoder without gradients, which data-parallel "
                        "training cannot average; train an aggressive VAE in one process.")
    report = make_report(lm.valid_batches, lm.device) if lm.valid_batches else None
    return build_and_fit(run, lm.start, lm.train_batches, lm.valid_batches, lm.device, resume, lm.description,
                         report=report)


def evaluate_texts(model: TextVAE, tokenizer: Any, recipe: dict[str, Any], texts: list[str], device: torch.device,
                   iw_samples: int = 500) -> dict[str, Any]:
    """``genloom evaluate`` on a VAE: the latent report with the importance-weighted NLL, batched as in the recipe."""
    if iw_samples < 1:
        raise UserError(f"the importance-weighted estimate needs at least 1 sample, got {iw_samples}.")
    data = from_dict(DataConfig, recipe["data"], "data")
    batches = lm_batches(encode_texts(texts, tokenizer, data), tokenizer, data, recipe["train"]["eval_batch_size"], 0)
    with evaluation_rng(device):
        result = latent_report(model, batches, device, iw_samples=iw_samples)
    result["protocol"] = (f"NLL: nats per sentence, summed over its words and the end-of-sentence token, by the "
                          f"importance-weighted estimate with {iw_samples} samples from q(z|x); perplexity = "
                          "exp(total NLL / total tokens incl. EOS); ELBO, reconstruction and KL per sentence with one "
                          "z sample; mutual information per batch (He et al. 2019), averaged; active units: "
                          "dimensions whose posterior mean has variance > 0.01 over the data")
    return result
