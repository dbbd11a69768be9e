"""Small renderers shared by pages: changed-word highlighting and probability strings."""

from __future__ import annotations

import difflib
import html

MARK = "background:#E69F00;color:#000;border-radius:3px;padding:0 2px"
STRIKE = "color:#888;text-decoration:line-through"


def highlight_changes(original: str, new: str) -> str:
    """HTML of ``new`` with the words that differ from ``original`` highlighted (word-level diff);
    removed words are shown struck through. Every word is HTML-escaped."""
    a, b = (original or "").split(), (new or "").split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out += [html.escape(w) for w in b[j1:j2]]
            continue
        if op in ("replace", "delete"):
            out += [f'<span style="{STRIKE}">{html.escape(w)}</span>' for w in a[i1:i2]]
        if op in ("replace", "insert"):
            out += [f'<mark style="{MARK}">{html.escape(w)}</mark>' for w in b[j1:j2]]
    return " ".join(out)


def highlight_tokens(tokens: list[str], new: list[str | None]) -> str:
    """Token-aligned: ``new[i]`` highlighted where it differs from ``tokens[i]`` (None = unchanged)."""
    out = []
    for t, n in zip(tokens, new):
        if n is None or n == t:
            out.append(html.escape(t))
        else:
            out.append(f'<span style="{STRIKE}">{html.escape(t)}</span> <mark style="{MARK}">{html.escape(n)}</mark>')
    return " ".join(out)


def label_prob(pred: int, probs: list[float], names: list[str]) -> str:
    name = names[pred] if 0 <= pred < len(names) else str(pred)
    return f"{name} ({probs[pred]:.2f})"


def probs_str(probs: list[float], names: list[str]) -> str:
    return " · ".join(f"{(names[i] if i < len(names) else i)} {p:.2f}" for i, p in enumerate(probs))


def escape(text: str) -> str:
    return html.escape(str(text))


def name_of(label: int, names: list[str]) -> str:
    return names[label] if 0 <= label < len(names) else str(label)


def targets_str(moved_to: list, n: int = 3) -> str:
    """``[["decent", 3], [",", 1]]`` -> ``decent 3 · , 1`` (the first ``n``; · since words may be commas)."""
    return " · ".join(f"{w} {c}" for w, c in (moved_to or [])[:n])
