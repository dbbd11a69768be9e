"""Tokenizers behind one small interface: text -> ids (padded batch), ids -> readable tokens.

``WordTokenizer`` (lower-cased words and punctuation, vocabulary built from the training set) and
``CharTokenizer`` serve the RNN families; ``HFTokenizer`` wraps a Hugging Face fast tokenizer
(WordPiece for MiniLM). Each saves to and loads from a checkpoint directory as plain text / JSON.

Every tokenizer reads at most the first ``limits.MAX_TEXT_CHARS`` characters of a text
(:func:`clip`): the work per text is bounded whatever a data file holds (one 30 MB line was
tokenized whole at each training step that drew it), and a model, which reads at most
``max_length`` tokens, sees the same tokens unless those span more than 100,000 characters.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import torch

from .limits import MAX_TEXT_CHARS, max_data_bytes
from .storage.jsonio import read_regular

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
_WORD_RE = re.compile(r"[\w']+|[^\w\s]", re.UNICODE)


def clip(text: str) -> str:
    """The part of ``text`` any tokenizer reads: its first ``MAX_TEXT_CHARS`` characters."""
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS]


def count_clipped(texts) -> int:
    """How many of ``texts`` are longer than the tokenizers read (recorded by training)."""
    return sum(len(t) > MAX_TEXT_CHARS for t in texts)


class TextTokenizer:
    """Interface. ``vocab[i]`` is the string of id i; ``special_ids`` are the structural tokens
    ([PAD], [CLS], [SEP], [MASK]), never perturbed; ``unk_id`` is the unknown-word token, a real
    word position in every family (see ``Classifier.perturbable_mask``)."""

    kind: str
    vocab: list[str]
    pad_id: int
    unk_id: int | None
    special_ids: frozenset[int]
    max_length: int

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """The ids of ``text`` (its first ``limit`` when given: only those are computed)."""
        raise NotImplementedError

    def batch(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Pad a list of texts to one batch: {'input_ids' (B,T) long, 'attention_mask' (B,T) long}."""
        max_length = max_length or self.max_length
        ids = [self.encode(t, max_length) for t in texts]
        width = max(1, max(len(x) for x in ids))
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.vocab[int(i)] for i in ids]

    def decode(self, ids) -> str:
        toks = [self.vocab[int(i)] for i in ids if int(i) not in self.special_ids]
        return self.join(toks)

    def join(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save(self, directory: Path) -> None:
        """Write the vocabulary files; ``meta()`` goes into the checkpoint's config.json."""
        raise NotImplementedError

    def meta(self) -> dict:
        return {"kind": self.kind, "max_length": self.max_length}

    def __len__(self) -> int:
        return len(self.vocab)


class WordTokenizer(TextTokenizer):
    """Lower-cased word/punctuation tokens; unknown words map to <unk>."""

    kind = "word"

    def __init__(self, vocab: list[str], max_length: int = 400, lowercase: bool = True):
        if vocab[:2] != [PAD, UNK]:
            raise ValueError("a word vocabulary starts with <pad>, <unk>")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.unk_id = 0, 1
        self.special_ids = frozenset({0})  # <unk> is a real (perturbable) position
        self.max_length = max_length
        self.lowercase = lowercase

    @classmethod
    def build(cls, texts, min_freq: int = 1, max_size: int | None = None, max_length: int = 400,
              lowercase: bool = True, extra=None) -> "WordTokenizer":
        """The vocabulary of ``texts`` (by frequency, then alphabetically; ``min_freq``, at most
        ``max_size`` entries with <pad> and <unk>). ``extra``: a function of that word list giving
        more words, appended after it in their order while ``max_size`` allows (the substitutes of
        ``train --vocab-substitutes``); the training words keep their ids either way."""
        counts = Counter()
        tmp = cls([PAD, UNK], max_length, lowercase)
        for t in texts:
            counts.update(tmp.tokenize(t))
        words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_freq]
        if max_size:
            words = words[: max_size - 2]
        if extra is not None:
            known = set(words) | {PAD, UNK}
            more = [w for w in dict.fromkeys(extra(words)) if w not in known and tmp.tokenize(w) == [w]]
            words += more[: max(0, max_size - 2 - len(words))] if max_size else more
        return cls([PAD, UNK] + words, max_length, lowercase)

    def tokenize(self, text: str, limit: int | None = None) -> list[str]:
        """The tokens of ``text`` (its first ``limit``: the rest of the text is not scanned)."""
        text = clip(text)
        text = text.lower() if self.lowercase else text
        if limit is None:
            return _WORD_RE.findall(text)
        return [m.group() for m in itertools.islice(_WORD_RE.finditer(text), limit)]

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in self.tokenize(text, limit)]

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        (directory / "vocab.txt").write_text("\n".join(self.vocab) + "\n", encoding="utf-8")

    def meta(self) -> dict:
        return {**super().meta(), "lowercase": self.lowercase}

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "WordTokenizer":
        """The vocabulary of a checkpoint (or LM) directory: a regular file of at most
        ``--max-data-mb`` (a checkpoint from elsewhere may hold a vocab.txt of any size)."""
        raw = read_regular(Path(directory) / "vocab.txt", max_data_bytes(), "vocabulary file (--max-data-mb)")
        vocab = raw.decode("utf-8").split("\n")[:-1]
        return cls(vocab, meta.get("max_length", 400), meta.get("lowercase", True))


class CharTokenizer(WordTokenizer):
    """Characters as tokens (Bělohlávek et al.'s character-level option); spaces kept as '▁'."""

    kind = "char"

    def tokenize(self, text: str, limit: int | None = None) -> list[str]:
        text = clip(text)
        text = text.lower() if self.lowercase else text
        return ["▁" if ch.isspace() else ch for ch in " ".join(text.split())][:limit]

    def join(self, tokens: list[str]) -> str:
        return "".join(" " if t == "▁" else t for t in tokens)


class HFTokenizer(TextTokenizer):
    """A Hugging Face fast tokenizer ([CLS] ... [SEP] with WordPieces for BERT-style models)."""

    kind = "hf"

    def __init__(self, hf_tokenizer, max_length: int = 128):
        self.hf = hf_tokenizer
        inv = {i: t for t, i in hf_tokenizer.get_vocab().items()}
        self.vocab = [inv.get(i, f"<id{i}>") for i in range(max(inv) + 1)]
        self.pad_id, self.unk_id = hf_tokenizer.pad_token_id, hf_tokenizer.unk_token_id
        # [UNK] stands for a real word of the text: perturbable, like the word tokenizers' <unk>
        self.special_ids = frozenset(hf_tokenizer.all_special_ids) - {self.unk_id}
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, path: str, max_length: int = 128, **kw) -> "HFTokenizer":
        from transformers import AutoTokenizer  # optional and slow to import: loaded only when used

        return cls(AutoTokenizer.from_pretrained(path, **kw), max_length)

    def tokenize(self, text: str) -> list[str]:
        return self.hf.tokenize(clip(text))

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        return self.hf.encode(clip(text), add_special_tokens=True)[:limit]

    def batch(self, texts, max_length=None):
        enc = self.hf([clip(t) for t in texts], padding=True, truncation=True, max_length=max_length or self.max_length,
                      return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def join(self, tokens: list[str]) -> str:
        return self.hf.convert_tokens_to_string(tokens)

    def save(self, directory: Path) -> None:
        self.hf.save_pretrained(str(directory))

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "HFTokenizer":
        from transformers import AutoTokenizer  # optional and slow to import: loaded only when used

        return cls(AutoTokenizer.from_pretrained(str(directory), local_files_only=True),
                   meta.get("max_length", 128))


def load_tokenizer(directory: Path, meta: dict) -> TextTokenizer:
    kinds = {"word": WordTokenizer, "char": CharTokenizer, "hf": HFTokenizer}
    kind = meta.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    return kinds[kind].load(directory, meta)
