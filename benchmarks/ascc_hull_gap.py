"""docs/results.md §15: the gap between ASCC's own (continuous) adversary over the substitution hull
and the discrete synonym search it is meant to stop.

    python benchmarks/ascc_hull_gap.py DIR [DIR ...] [--n 500] [--steps 5]

For each checkpoint, on the same sst2-sent dev sentences that ``advviz eval --max-examples N``
attacks (eval's seeded subset), runs ``--attack ascc`` (every word at once moves inside the convex
hull of itself and its substitution set; the adversary maximises KL(p(x) ‖ p(v̂)) with ``--steps``
Adam steps, as in training) through the one attack loop, and prints clean accuracy, the mean confidence max p(y|x) and the share of sentences below 0.6,
accuracy under the hull adversary, the mean KL it reaches, and the share of sentences it flips. A model that
is robust on the hull but not under textfooler-cf is beaten by the discrete search, not by the
relaxation; a model the hull adversary also breaks has not learnt the invariance ASCC trains for.
"""

from __future__ import annotations

import argparse

import torch.nn.functional as F

from advviz.analysis.attacks import attack_batches, prepare_attack
from advviz.api import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    print("| checkpoint | clean acc | mean max p(y|x) | share with max p < 0.6 | acc under the ASCC hull adversary | mean KL(p(x) ‖ p(v̂)) | flipped |")
    print("|---|---|---|---|---|---|---|")
    for d in args.dirs:
        model = load(d)
        ds = model.examples(split="dev").subset(args.n, 0)
        method, _ = prepare_attack(model, "ascc", {"steps": args.steps})
        clean = adv = flips = unsure = 0
        conf = 0.0
        kl_sum = 0.0
        for ab in attack_batches(model.classifier, method, ds.texts, ds.labels, seed=0):
            y = ab.labels
            p_clean = F.log_softmax(ab.clean.logits.float(), -1)
            p_adv = F.log_softmax(ab.adv.logits.float(), -1)
            c, a = p_clean.argmax(-1), p_adv.argmax(-1)
            clean += int((c == y).sum())
            top = p_clean.exp().max(-1).values
            conf += float(top.sum())
            unsure += int((top < 0.6).sum())
            adv += int(((a == y) & (c == y)).sum())
            flips += int((a != c).sum())
            kl_sum += float(F.kl_div(p_adv, p_clean, log_target=True, reduction="none").sum(-1).sum())
        n = len(ds)
        print(f"| {d} | {clean / n:.3f} | {conf / n:.3f} | {unsure / n:.3f} | {adv / n:.3f} | {kl_sum / n:.4f} | {flips / n:.3f} |")


if __name__ == "__main__":
    main()
