"""What DNE's plain inference costs against the paper's ensemble (Zhou et al. 2021 §3.3): dev accuracy
of a DNE checkpoint read as advviz reads every model (x's own embeddings) and as the average of the
class probabilities over N Dirichlet hull samples per sentence (the training distribution, with the
checkpoint's own α, decay and substitution sets). advviz keeps plain inference (``methods/dne.py``);
this measures what that choice changes.

    python benchmarks/dne_ensemble.py models/substitution-bar/lstm-dne-s0 [--samples 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from advviz.api import load
from advviz.evaluate import batches_by_length
from advviz.methods import build_method


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="+")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    for path in args.checkpoint:
        model = load(path)
        core = model.classifier.eval()
        settings = {k: v for k, v in (model.config.get("method") or {}).items() if k != "name"}
        dne = build_method("dne", settings)
        ds = model.examples(None, "dev")
        gen = torch.Generator().manual_seed(args.seed)
        plain, ens = np.zeros(len(ds), np.int64), np.zeros(len(ds), np.int64)
        with torch.no_grad():
            for idx, b in batches_by_length(core, ds.texts, args.batch_size):
                ids, att = b["input_ids"], b["attention_mask"]
                embeds = core.embed(ids)
                plain[idx] = core(inputs_embeds=embeds, attention_mask=att).logits.argmax(-1).numpy()
                mask = core.perturbable_mask(ids, att)
                probs = 0
                for _ in range(args.samples):
                    _, valid, w, rows = dne.sample(core, ids, mask, gen)
                    delta = (w.unsqueeze(-1) * rows).sum(2) - rows[:, :, 0]
                    probs = probs + torch.softmax(core(inputs_embeds=embeds + delta, attention_mask=att).logits, -1)
                ens[idx] = probs.argmax(-1).numpy()
        y = np.asarray(ds.labels)
        print(json.dumps({"checkpoint": path, "n": len(ds), "samples": args.samples,
                          "plain_accuracy": float((plain == y).mean()), "ensemble_accuracy": float((ens == y).mean()),
                          "disagree": float((plain != ens).mean())}))


if __name__ == "__main__":
    main()
