"""Word-substitution sets: the synonyms a word may be replaced by, shared by the synonym attacks
(``textattack:textfooler-cf``) and the methods that train over substitution sets (ASCC, DNE).

The default file is Jia et al. 2019's counter-fitted sets (``counterfitted_neighbors.json.gz`` in
the data directory: a JSON object word -> up to 8 neighbour words; see the data README), the
sets ASCC (Dong et al. 2021) and DNE (Zhou et al. 2021) use. ``--neighbors FILE`` names another
file of the same shape (gzip or plain JSON).

What the loader guarantees, so every user reads the same sets:
- keys and neighbours are lower-cased (the sets are lower-case; so are the word vocabularies);
- a word is never its own neighbour and a neighbour appears once, in the file's order;
- words with no neighbour are kept with an empty list (they are never moved).

The relation is *not* symmetrised: Jia et al.'s sets are directed lists and the references (ASCC's
``get_adv_by_convex_syn``, DNE's first-order neighbours) use them as read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import data
from .errors import AdvvizError

#: the file read when ``--neighbors`` is not given, looked for in the data directory
DEFAULT_FILE = "counterfitted_neighbors.json.gz"
NEIGHBORS_FLAG = "--neighbors"

_CACHE: dict[tuple, dict[str, list[str]]] = {}


def neighbors_path(path: str | os.PathLike | None = None, data_dir=None) -> Path:
    """The substitution file: ``path`` when given, else :data:`DEFAULT_FILE` in the data directory
    (``--data-dir``, ``$ADVVIZ_DATA_DIR``, ``../shared/data`` beside a checkout, ``./data``).
    A missing file is one line naming what to give."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise AdvvizError(f"{NEIGHBORS_FLAG} {p}: no such file (a JSON object word -> list of "
                              f"substitute words, gzip or plain)")
        return p
    tried = []
    for _, d in data.data_dir_search(data_dir):
        if d is None:
            continue
        cand = d / DEFAULT_FILE
        if cand.is_file():
            return cand
        tried.append(str(cand))
    raise AdvvizError(f"no word-substitution sets: {DEFAULT_FILE} is not in the data directory "
                      f"(looked at {', '.join(tried) or 'nothing'}); pass {NEIGHBORS_FLAG} FILE or "
                      f"--data-dir DIR holding it (Jia et al. 2019's counter-fitted sets, see the data README)")


def parse(obj, where: str) -> dict[str, list[str]]:
    """Validate and normalise a decoded substitution file (see the module docstring)."""
    if not isinstance(obj, dict):
        raise AdvvizError(f"{where}: expected a JSON object word -> list of words, got {type(obj).__name__}")
    out: dict[str, list[str]] = {}
    for word, nbrs in obj.items():
        if not isinstance(nbrs, list) or not all(isinstance(n, str) for n in nbrs):
            raise AdvvizError(f"{where}: the neighbours of {word[:40]!r} are not a list of words")
        w = word.lower()
        seen, kept = {w}, out.get(w, [])
        seen.update(kept)
        for n in nbrs:
            n = n.lower()
            if n and n not in seen:
                seen.add(n)
                kept.append(n)
        out[w] = kept
    return out


def load(path: str | os.PathLike | None = None, data_dir=None) -> dict[str, list[str]]:
    """word -> its substitution set (see :func:`neighbors_path` for which file). Read as every data
    file is (regular file, size-bounded, UTF-8) and cached per file and modification time."""
    p = neighbors_path(path, data_dir)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        text = data._read_text(p)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise AdvvizError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
        _CACHE.clear()
        _CACHE[key] = parse(obj, str(p))
    return _CACHE[key]


def describe(sets: dict[str, list[str]]) -> dict:
    """Counts for reports: words, words with at least one neighbour, mean set size of those."""
    sizes = [len(v) for v in sets.values() if v]
    return {"words": len(sets), "with_neighbors": len(sizes),
            "mean_set_size": round(sum(sizes) / len(sizes), 3) if sizes else 0.0}


def vocabulary_words(sets: dict[str, list[str]], words, second_order: bool = False) -> list[str]:
    """The substitutes of ``words`` (and theirs, with ``second_order``), in file order, each once,
    none of ``words``: what a word vocabulary adds so that every swap over the sets reads a word
    the model has a row for (``train --vocab-substitutes``; the ASCC reference fits its tokenizer
    on the synonyms of its vocabulary, dataHelper.py)."""
    have = set(words)
    out: dict[str, None] = {}
    for w in words:
        for n in sets.get(w, ()):
            out[n] = None
            if second_order:
                for m in sets.get(n, ()):
                    out[m] = None
    return [w for w in out if w not in have]
