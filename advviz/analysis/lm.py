"""A word-level LSTM language model, to score how natural (adversarial) text is.

SPGD (Barham & Feizi 2019, Table 1 and App. B) scores adversarial texts by the average per-word
perplexity under a unidirectional LSTM LM trained on the corpus. Here:

    p(w_1..w_n) = Π_j p(w_j | <s>, w_1..w_{j-1}) · p(</s> | <s>, w_1..w_n)
    perplexity(texts) = exp( Σ_texts −log p / Σ_texts (n + 1) )          (include_eos=True)

i.e. the corpus-level per-token perplexity, every word and the end-of-sentence counted once
(``include_eos=False`` leaves the </s> term out of both sums). Words are the classifier's
``WordTokenizer`` tokens (lower-cased words and punctuation); out-of-vocabulary words are <unk>
and predicted as such.

An LM directory holds config.json (kind "lm"), model.safetensors, vocab.txt and metrics.json
(held-out perplexity); it is written to a temporary sibling and renamed into place. Never pickle.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..config import Config, hp
from ..data import load_dataset
from ..errors import AdvvizError, first_line
from ..limits import MAX_DIM, MAX_LAYERS, seed_problem
from ..storage import outdir
from ..storage.checkpoint import atomic_dir, check_tensors, state_tensors, stored
from ..storage.jsonio import dumps, read_json
from ..storage.schema import check_lm_config
from ..tokenizers import BOS, EOS, PAD, UNK, WordTokenizer

LM_KIND = "advviz-lstm-lm"


@dataclass(frozen=True)
class LMConfig(Config):
    """The LM's architecture (SPGD used 256 / 1024 on all of IMDB; CPU scale is smaller)."""

    embedding_dim: int = hp(128, "LM word-embedding size")
    hidden_size: int = hp(256, "LM LSTM hidden size")
    num_layers: int = hp(1, "LM LSTM layers", flag="--layers")
    dropout: float = hp(0.3, "LM dropout (embeddings and LSTM output)")
    tie_weights: bool = hp(False, "tie the output layer to the embeddings (needs equal sizes)")

    def __post_init__(self):
        super().__post_init__()  # the documented maxima (limits.MAXIMA)
        if min(self.embedding_dim, self.hidden_size, self.num_layers) < 1:
            raise ValueError("LM sizes must be positive")
        if max(self.embedding_dim, self.hidden_size) > MAX_DIM or self.num_layers > MAX_LAYERS:
            raise ValueError(f"LM sizes must be at most {MAX_DIM:,} and --layers at most {MAX_LAYERS:,}")
        if not 0 <= self.dropout < 1:
            raise ValueError("--dropout must be in [0, 1)")
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ValueError("tied weights need embedding_dim == hidden_size")


class LSTMLanguageModel(nn.Module):
    """Embedding -> LSTM -> linear over the vocabulary; ``tokenizer.vocab`` starts <pad> <unk> <s> </s>."""

    def __init__(self, tokenizer: WordTokenizer, config: LMConfig = LMConfig()):
        super().__init__()
        if tokenizer.vocab[:4] != [PAD, UNK, BOS, EOS]:
            raise ValueError("an LM vocabulary starts with <pad>, <unk>, <s>, </s>")
        self.tokenizer, self.config = tokenizer, config
        v = len(tokenizer.vocab)
        self.embedding = nn.Embedding(v, config.embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, config.num_layers, batch_first=True,
                            dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.decoder = nn.Linear(config.hidden_size, v)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    @property
    def bos_id(self) -> int:
        return 2

    @property
    def eos_id(self) -> int:
        return 3

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """<long>[B,T] -> next-token logits <float>[B,T,V]."""
        h, _ = self.lstm(self.drop(self.embedding(input_ids)))
        return self.decoder(self.drop(h))

    def encode_words(self, item: str | list[str]) -> list[int]:
        """A text (tokenized like training text) or a list of words already tokenized (a classifier's
        word tokens: its ``<unk>`` maps to this LM's ``<unk>``) -> ids."""
        if isinstance(item, str):
            return self.tokenizer.encode(item)
        index, unk = self.tokenizer.index, self.tokenizer.unk_id
        return [index.get(w.lower() if self.tokenizer.lowercase else w, unk) for w in item]

    def encode_batch(self, texts: list, max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs <s> w_1..w_n, targets w_1..w_n </s>), padded with 0 (ignored in the loss)."""
        seqs = [self.encode_words(t)[: max_length or None] for t in texts]
        width = max(len(s) for s in seqs) + 1
        inp = torch.zeros((len(seqs), width), dtype=torch.long)
        tgt = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            inp[i, : len(s) + 1] = torch.tensor([self.bos_id] + s)
            tgt[i, : len(s) + 1] = torch.tensor(s + [self.eos_id])
        return inp, tgt


def build_lm_tokenizer(texts, max_vocab: int | None = 30000, min_freq: int = 2) -> WordTokenizer:
    base = WordTokenizer.build(texts, min_freq=min_freq, max_size=None)
    words = [w for w in base.vocab[2:] if w not in (BOS, EOS)]
    if max_vocab:
        words = words[: max(0, max_vocab - 4)]
    return WordTokenizer([PAD, UNK, BOS, EOS] + words, max_length=10**9)


# --------------------------------------------------------------------------------------------
# scoring


@torch.no_grad()
def sentence_nll(lm: LSTMLanguageModel, texts: list, batch_size: int = 64, include_eos: bool = True,
                 max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per text (a string, or a list of words): (summed −log p in nats <float64>[N], number of
    predicted tokens <int64>[N])."""
    was = lm.training
    lm.eval()
    nll = np.zeros(len(texts), dtype=np.float64)
    count = np.zeros(len(texts), dtype=np.int64)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        inp, tgt = lm.encode_batch([texts[i] for i in idx], max_length)
        logits = lm(inp)
        tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none",
                              ignore_index=0).view(tgt.shape)
        keep = tgt != 0
        if not include_eos:
            keep &= tgt != lm.eos_id
        nll[idx] = (tok * keep).sum(1).double().numpy()
        count[idx] = keep.sum(1).numpy()
    lm.train(was)
    return nll, count


def perplexity(lm: LSTMLanguageModel, texts: list, include_eos: bool = True, batch_size: int = 64) -> float:
    """Per-word perplexity of a corpus (strings or word lists): exp(total −log p / total predicted tokens)."""
    if not texts:
        raise AdvvizError("perplexity of an empty list of texts is undefined")
    nll, count = sentence_nll(lm, list(texts), batch_size, include_eos)
    if count.sum() == 0:
        raise AdvvizError("the texts contain no words to score")
    return float(math.exp(nll.sum() / count.sum()))


# --------------------------------------------------------------------------------------------
# saving and loading


def save_lm(lm: LSTMLanguageModel, out: str | os.PathLike, metrics: dict, extra_config: dict | None = None) -> Path:
    """Write the LM directory atomically (temp sibling + rename; :func:`advviz.storage.checkpoint.atomic_dir`)."""
    out = Path(out)
    with atomic_dir(out, f"could not write the language model to {out}", "language model", outdir.LM) as tmp:
        config = {"kind": LM_KIND, "model": asdict(lm.config), "tokenizer": lm.tokenizer.meta(), **(extra_config or {})}
        (tmp / "config.json").write_text(dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / "metrics.json").write_text(dumps(metrics, indent=2) + "\n", encoding="utf-8")
        save_file(state_tensors(lm, {}), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        lm.tokenizer.save(tmp)
    return out


def load_lm(directory: str | os.PathLike) -> LSTMLanguageModel:
    """An LM saved by :func:`save_lm` / ``advviz lm train`` (safetensors + JSON + vocab.txt only)."""
    d = Path(directory)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise AdvvizError(f"{d} is not an advviz language model (train one with `advviz lm train`)")
    config = read_json(d / "config.json")
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind != LM_KIND:
        raise AdvvizError(f"{d} is not a language model directory (config kind {kind!r}); "
                          f"did you pass a classifier checkpoint to --lm?")
    check_lm_config(config, f"{d}/config.json")
    try:
        tok = WordTokenizer.load(d, config["tokenizer"])
        lm_config = LMConfig(**config["model"])
        with torch.device("meta"):  # shapes first, nothing allocated: a config may not describe a 40 GB LSTM
            expected = dict(stored(LSTMLanguageModel(tok, lm_config), {}))
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise AdvvizError(f"{d}: language model files are inconsistent or truncated ({first_line(e)})") from None
    check_tensors(d / "model.safetensors", expected)
    try:
        lm = LSTMLanguageModel(tok, lm_config)
        lm.load_state_dict(load_file(str(d / "model.safetensors")), strict=not lm_config.tie_weights)
    except (SafetensorError, OSError) as e:
        raise AdvvizError(f"{d}/model.safetensors is unreadable or truncated ({first_line(e)})") from None
    lm.metrics = read_json(d / "metrics.json", expect=dict) if (d / "metrics.json").is_file() else {}
    return lm.eval()


# --------------------------------------------------------------------------------------------
# training


@dataclass(frozen=True)
class LMTrainConfig(Config):
    epochs: int = hp(3, "passes over the texts")
    batch_size: int = hp(32, "texts per optimiser step")
    lr: float = hp(1e-3, "Adam learning rate (SPGD App. B)")
    max_train: int | None = hp(None, "a seeded subset of N texts")
    max_length: int = hp(200, "words per text (IMDB reviews are long)")
    max_vocab: int = hp(30000, "at most N words")
    min_freq: int = hp(2, "words seen at least N times")
    held_out: float = hp(0.05, "share of texts kept for held-out perplexity")
    grad_clip: float = hp(1.0, "largest gradient norm")
    seed: int = hp(0, "seed of the held-out split, initialisation and order")

    def __post_init__(self):
        super().__post_init__()  # the documented maxima (limits.MAXIMA)
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 1:
            raise ValueError("--epochs, --batch-size and --max-length must be positive")
        if not 0 < self.held_out < 0.5:
            raise ValueError("--held-out must be in (0, 0.5)")
        if self.max_train is not None and self.max_train < 10:
            raise ValueError("--max-train must be at least 10")
        if not (0 < self.lr < 1):
            raise ValueError(f"--lr must be in (0, 1), got {self.lr}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"the gradient clip must be a positive number, got {self.grad_clip}")
        if self.max_vocab < 5 or self.min_freq < 1:
            raise ValueError("--max-vocab must be at least 5 (<pad> <unk> <s> </s> and a word) and --min-freq at least 1")

        if seed_problem(self.seed):
            raise ValueError(seed_problem(self.seed))


def split_held_out(texts: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    idx = np.random.default_rng(seed).permutation(len(texts))
    n_ho = max(1, int(round(share * len(texts))))
    return [texts[i] for i in idx[n_ho:]], [texts[i] for i in idx[:n_ho]]


def _epoch(lm, opt, texts, cfg, rng, bar) -> float:
    """One pass in length-bucketed, shuffled batches; returns the mean training loss (nats/token)."""
    lm.train()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = [order[s: s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]
    total, tokens = 0.0, 0
    for c in rng.permutation(len(chunks)):
        inp, tgt = lm.encode_batch([texts[i] for i in chunks[c]], cfg.max_length)
        logits = lm(inp)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(lm.parameters(), cfg.grad_clip)
        opt.step()
        n = int((tgt != 0).sum())
        total, tokens = total + loss.item() * n, tokens + n
        bar.update(1)
        bar.set_postfix(ppl=f"{math.exp(min(total / max(tokens, 1), 50)):.1f}")
    return total / max(tokens, 1)


def train_lm(dataset: str, out: str | os.PathLike, config: LMTrainConfig = LMTrainConfig(),
             model_config: LMConfig = LMConfig(), split: str = "train", data_dir=None,
             progress: bool = True) -> tuple[LSTMLanguageModel, dict]:
    """Train on a data set's texts (labels unused), keep the best held-out epoch, save to ``out``."""
    torch.manual_seed(config.seed)
    ds = load_dataset(dataset, split, data_dir).subset(config.max_train, config.seed)
    train, held = split_held_out(ds.texts, config.held_out, config.seed)
    tok = build_lm_tokenizer(train, config.max_vocab, config.min_freq)
    lm = LSTMLanguageModel(tok, model_config)
    opt = torch.optim.Adam(lm.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    steps = config.epochs * math.ceil(len(train) / config.batch_size)
    bar = tqdm(total=steps, desc=f"lm {dataset}", disable=not progress)
    best, best_state, t0, history = float("inf"), None, time.perf_counter(), []
    for epoch in range(config.epochs):
        train_loss = _epoch(lm, opt, train, config, rng, bar)
        nll, cnt = sentence_nll(lm, held, include_eos=True, max_length=config.max_length)
        ppl = float(math.exp(nll.sum() / max(cnt.sum(), 1)))
        history.append({"epoch": epoch, "train_perplexity": math.exp(train_loss), "held_out_perplexity": ppl})
        if progress:
            tqdm.write(f"epoch {epoch}: held-out perplexity {ppl:.2f}")
        if ppl < best:
            best, best_state = ppl, {k: v.clone() for k, v in lm.state_dict().items()}
    bar.close()
    lm.load_state_dict(best_state)
    metrics = {"held_out_perplexity": best, "held_out_texts": len(held), "train_texts": len(train),
               "vocab_size": len(tok.vocab), "parameters": sum(p.numel() for p in lm.parameters()),
               "train_seconds": time.perf_counter() - t0, "history": history,
               "oov_rate_held_out": _oov_rate(tok, held)}
    save_lm(lm, out, metrics, {"data": {"name": dataset, "split": split, "subset": ds.split_info.get("subset")},
                               "train": asdict(config)})
    lm.metrics = metrics
    return lm.eval(), metrics


def _oov_rate(tok: WordTokenizer, texts: list[str]) -> float:
    ids = [i for t in texts for i in tok.encode(t)]
    return float(np.mean([i == tok.unk_id for i in ids])) if ids else 0.0


def _lm_words(lm: LSTMLanguageModel, tokenizer, tokens: list[str]) -> list[str] | str:
    """A classifier's tokens as LM input: word tokens pass through (so <unk> stays <unk>); sub-word
    tokens are joined back into text and re-tokenized by the LM."""
    return list(tokens) if getattr(tokenizer, "kind", "") == "word" else tokenizer.join(tokens)


def _inspect_by_label(model, texts, labels, attack, overrides, seed, bar) -> list[dict]:
    """``advviz.analysis.inspection.inspect`` against each text's gold label (it takes one label per call)."""
    from .inspection import inspect  # deferred: `advviz --help` must not load it

    rows: list = [None] * len(texts)
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        for s in range(0, len(idx), 32):
            chunk = idx[s: s + 32]
            for i, r in zip(chunk, inspect(model, [texts[i] for i in chunk], attack, overrides, label=c, seed=seed)):
                rows[i] = r
            if bar is not None:
                bar.update(len(chunk))
    return rows


def adversarial_perplexity(model, lm: LSTMLanguageModel, texts: list[str], labels: list[int], attack: str,
                           overrides: dict | None = None, seed: int = 0, progress: bool = False) -> dict:
    """SPGD Table 1 for one attack: LM perplexity of the originals and of their discretized
    adversarial texts (``advviz.analysis.inspection``: each perturbed token replaced by the neighbour it
    moved towards), and the gap (adversarial − original). Both sides go through the classifier's
    tokenizer (same truncation, same <unk>), so the gap measures the substitutions only."""
    texts, labels = list(texts), [int(y) for y in labels]
    if len(texts) != len(labels) or not texts:
        raise AdvvizError("perplexity needs a non-empty list of texts with one label each")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    tok = model.classifier.tokenizer
    bar = tqdm(total=len(texts), desc=f"{attack}", leave=False) if progress else None
    rows = _inspect_by_label(model, texts, labels, attack, overrides, seed, bar)
    if bar is not None:
        bar.close()
    orig_tokens = [[t["token"] for t in r["tokens"]] for r in rows]
    adv_tokens = [[t["moved_to"] if t["norm"] > 0 and t["moved_to"] else t["token"] for t in r["tokens"]]
                  for r in rows]
    near_tokens = [[t["nearest"] if t["norm"] > 0 else t["token"] for t in r["tokens"]] for r in rows]
    changed = [sum(a != b for a, b in zip(o, v)) for o, v in zip(orig_tokens, adv_tokens)]
    orig = perplexity(lm, [_lm_words(lm, tok, t) for t in orig_tokens])
    adv = perplexity(lm, [_lm_words(lm, tok, t) for t in adv_tokens])
    near = perplexity(lm, [_lm_words(lm, tok, t) for t in near_tokens])
    return {"attack": attack, "overrides": overrides, "n": len(texts), "original_perplexity": orig,
            "adversarial_perplexity": adv, "gap": adv - orig,
            "nearest_perplexity": near, "nearest_gap": near - orig,
            "nearest_changed_tokens_per_text": float(np.mean([sum(a != b for a, b in zip(o, v))
                                                              for o, v in zip(orig_tokens, near_tokens)])),
            "changed_texts": float(np.mean([c > 0 for c in changed])),
            "changed_tokens_per_text": float(np.mean(changed)),
            "adv_accuracy": float(np.mean([r["adv_pred"] == y for r, y in zip(rows, labels)])),
            "examples": [{"text": r["text"], "adversarial": r["discretized_text"]} for r in rows[:5]]}
