"""How much information about E each attack's E + δ keeps, measured by an independent MINE
(docs/results.md §8): for the same sentences and the same ε, δ from uae, pgd, vat and a random
direction; a fresh statistics network (advviz.methods.mine, the one UAE uses) is trained on the
(E, E + δ) channel pairs of half the sentences and evaluated on the other half.

    python benchmarks/label_free_mi.py models/label-free/base-s0 --eps 0.4 --n 512

Also reports ‖δ‖, the representation drift 1 − cos(f(E), f(E + δ)), the share of predictions
that flip (against the model's own prediction) and, for uae, the share of sentences whose search
met its constraint. An attack may carry settings: ``--attacks uae,uae:uae_c0=100;uae_margin=0.05``.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import advviz
from advviz.analysis.attacks import attach_index, build_attack
from advviz.methods.mine import MINE, channel_samples, clean_scale
from advviz.methods.vat import random_unit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--eps", type=float, default=0.4)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--steps", type=int, default=400, help="Adam steps of the evaluating MINE")
    ap.add_argument("--attacks", default="uae,pgd,vat,random")
    args = ap.parse_args()
    model = advviz.load(args.checkpoint)
    core = model.classifier.eval()
    ds = model.examples(None, "dev").subset(args.n, 0)
    tok = core.tokenizer
    print(f"{args.checkpoint}: {len(ds)} dev sentences, ε {args.eps}\n")
    print("| attack | ‖δ‖ | 1 − cos(f(E), f(E+δ)) | flipped | uae constraint met | MI estimate (held-out half) |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in args.attacks.split(","):
        name, _, rest = spec.partition(":")
        over = {k: float(v) for k, v in (kv.split("=") for kv in rest.split(";") if kv)}
        gen = torch.Generator().manual_seed(0)
        xs, ys, drift, flips, norms, met = [], [], [], [], [], []
        method = None if name == "random" else build_attack(name, {"epsilon": args.eps, **over}, core)
        if method is not None:
            attach_index(method, core)
        for s in range(0, len(ds), 32):
            b = {k: v for k, v in tok.batch(ds.texts[s: s + 32]).items()}
            ids, att = b["input_ids"], b["attention_mask"]
            mask = core.perturbable_mask(ids, att)
            emb = core.embed(ids).detach()
            with torch.no_grad():
                clean = core(inputs_embeds=emb, attention_mask=att)
            b["labels"] = clean.logits.argmax(-1)
            d = (args.eps * random_unit(emb, mask, gen) if method is None else method.perturb(core, b, gen))
            if name == "uae":
                met += method.last["feasible"].tolist()
            with torch.no_grad():
                adv = core(inputs_embeds=emb + d, attention_mask=att)
            drift += (1 - F.cosine_similarity(clean.pooled, adv.pooled, dim=-1)).tolist()
            flips += (adv.logits.argmax(-1) != clean.logits.argmax(-1)).tolist()
            norms += d.flatten(1).norm(dim=1).tolist()
            scale = clean_scale(emb, mask)
            x, y = channel_samples(emb, mask, scale), channel_samples(emb + d, mask, scale)
            for i in range(len(ids)):  # per sentence, its own length
                n = int(att[i].sum())
                xs.append(x[i, :, :n])
                ys.append(y[i, :, :n])
        half = len(xs) // 2
        mine = MINE(seed=0)
        g = torch.Generator().manual_seed(1)

        def batch(rows):
            L = max(xs[r].shape[1] for r in rows)
            X = torch.stack([F.pad(xs[r], (0, L - xs[r].shape[1])) for r in rows])
            Y = torch.stack([F.pad(ys[r], (0, L - ys[r].shape[1])) for r in rows])
            M = torch.stack([torch.arange(L) < xs[r].shape[1] for r in rows])
            return X, Y, M

        for _ in range(args.steps):
            rows = torch.randint(0, half, (16,), generator=g).tolist()
            mine.train(*batch(rows), 1, g)
        with torch.no_grad():
            est = [mine.estimate(*batch(list(range(s, min(s + 32, len(xs))))), g) for s in range(half, len(xs), 32)]
        mi = torch.cat(est).mean().item()
        n = len(drift)
        ok = f"{sum(met) / len(met):.2f}" if met else "–"
        print(f"| {spec} | {sum(norms) / n:.3f} | {sum(drift) / n:.4f} | {sum(flips) / n:.3f} | {ok} | {mi:.3f} |")


if __name__ == "__main__":
    main()
