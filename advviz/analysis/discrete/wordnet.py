"""WordNet 3.0 for ``textattack:pwws``, offline: NLTK's ``wordnet`` corpus built from Debian's
``wordnet-base`` and ``wordnet-sense-index`` packages (``make setup-textattack`` installs them where
apt is available: ``.ci/wordnet.sh``).

Which corpus NLTK reads (:func:`ensure`, once per process):

1. the user's own NLTK ``wordnet`` corpus when it is on ``nltk.data.path`` (unpacked or zipped) —
   it wins, as it would without advviz;
2. else advviz's copy, ``$ADVVIZ_CACHE_DIR/nltk_data`` (or ``~/.cache/advviz/nltk_data``, the cache
   folder the projection and word-atlas caches use), built at first use from :data:`DEBIAN_DIR` and
   then added to ``nltk.data.path``;
3. else one line naming what to install (:data:`INSTALL`).

Why a build and not a path: NLTK 3.10 opens the corpus's ``lexnames`` file, which no Debian
package ships (rebuilt here from the table of lexnames(5WN): :data:`LEXNAMES`), reads
``index.sense`` when the corpus opens (``wordnet-sense-index``), and refuses symlinked or
hard-linked corpus files — so the files are real copies. The build is atomic (a hidden temporary
directory renamed into place, its file list and sizes recorded in :data:`MARKER`); advviz replaces
only a directory carrying its own marker and never touches anything else in the cache folder.

TextAttack 0.3.11's ``WordSwapWordNet`` calls ``nltk.download("omw-1.4")`` when it is built; English
needs no Open Multilingual WordNet data, so :func:`no_download` stands in for ``nltk.download``
while the recipe is built: nothing waits on the network and nothing is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from ...errors import AdvvizError
from ...storage.jsonio import dumps
from ...storage.outdir import replace_dir, temp_sibling

DEBIAN_DIR = Path("/usr/share/wordnet")
CACHE_ENV = "ADVVIZ_CACHE_DIR"
MARKER = ".advviz-wordnet.json"
INSTALL = ("WordNet 3.0: apt-get install wordnet-base wordnet-sense-index (or make setup-textattack), "
           "or python -m nltk.downloader wordnet")

#: the files of NLTK's ``WordNetCorpusReader._FILES`` that Debian ships, copied as they are
#: (``index.sense`` from wordnet-sense-index, the rest from wordnet-base); ``lexnames`` is written
COPIED = ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb",
          "data.adj", "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc")

#: WordNet 3.0's lexicographer files, from the table of lexnames(5WN) (``man 5WN lexnames``, shipped
#: by wordnet-base as /usr/share/man/man5/lexnames.5WN.gz): file number, file name and syntactic
#: category (1 noun, 2 verb, 3 adjective, 4 adverb — "also part of the lexicographer file's name",
#: as the man page says). NLTK reads it as the ``lexnames`` file, one tab-separated line each.
LEXNAMES = (
    ("00", "adj.all", 3),
    ("01", "adj.pert", 3),
    ("02", "adv.all", 4),
    ("03", "noun.Tops", 1),
    ("04", "noun.act", 1),
    ("05", "noun.animal", 1),
    ("06", "noun.artifact", 1),
    ("07", "noun.attribute", 1),
    ("08", "noun.body", 1),
    ("09", "noun.cognition", 1),
    ("10", "noun.communication", 1),
    ("11", "noun.event", 1),
    ("12", "noun.feeling", 1),
    ("13", "noun.food", 1),
    ("14", "noun.group", 1),
    ("15", "noun.location", 1),
    ("16", "noun.motive", 1),
    ("17", "noun.object", 1),
    ("18", "noun.person", 1),
    ("19", "noun.phenomenon", 1),
    ("20", "noun.plant", 1),
    ("21", "noun.possession", 1),
    ("22", "noun.process", 1),
    ("23", "noun.quantity", 1),
    ("24", "noun.relation", 1),
    ("25", "noun.shape", 1),
    ("26", "noun.state", 1),
    ("27", "noun.substance", 1),
    ("28", "noun.time", 1),
    ("29", "verb.body", 2),
    ("30", "verb.change", 2),
    ("31", "verb.cognition", 2),
    ("32", "verb.communication", 2),
    ("33", "verb.competition", 2),
    ("34", "verb.consumption", 2),
    ("35", "verb.contact", 2),
    ("36", "verb.creation", 2),
    ("37", "verb.emotion", 2),
    ("38", "verb.motion", 2),
    ("39", "verb.perception", 2),
    ("40", "verb.possession", 2),
    ("41", "verb.social", 2),
    ("42", "verb.stative", 2),
    ("43", "verb.weather", 2),
    ("44", "adj.ppl", 3),
)

_STATE: dict = {}


class WordNetMissing(AdvvizError):
    """Neither an NLTK ``wordnet`` corpus nor Debian's WordNet files are on this machine."""


def lexnames_text() -> str:
    return "".join(f"{n}\t{name}\t{cat}\n" for n, name, cat in LEXNAMES)


def cache_dir() -> Path:
    """advviz's NLTK data folder: ``$ADVVIZ_CACHE_DIR/nltk_data`` or ``~/.cache/advviz/nltk_data``."""
    env = os.environ.get(CACHE_ENV)
    return (Path(env) if env else Path.home() / ".cache" / "advviz") / "nltk_data"


def _user_corpus() -> str | None:
    """Where the user's own NLTK ``wordnet`` corpus is on ``nltk.data.path``, or None."""
    import nltk  # lazy: nltk comes with the optional extra 'textattack'

    for name in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            return str(nltk.data.find(name))
        except LookupError:
            continue
    return None


def _expected(source: Path) -> dict[str, int] | None:
    """Size of each file to copy from ``source``; None when one is missing (not installed)."""
    sizes = {}
    for name in COPIED:
        p = source / name
        if not p.is_file():
            return None
        sizes[name] = p.stat().st_size
    return sizes


def _ours(target: Path) -> dict | None:
    """The marker of an advviz-built corpus at ``target`` (None: not advviz's, or not a directory)."""
    try:
        if target.is_symlink() or not target.is_dir():
            return None
        marker = json.loads((target / MARKER).read_text(encoding="utf-8"))
        return marker if isinstance(marker, dict) and isinstance(marker.get("files"), dict) else None
    except (OSError, ValueError):
        return None


def _complete(target: Path, marker: dict, sizes: dict[str, int] | None) -> bool:
    """The corpus at ``target`` holds every file its marker lists, at the recorded sizes, and (when
    the Debian files are there) was built from files of the sizes they have now."""
    files = marker["files"]
    if sizes is not None and any(files.get(k) != v for k, v in sizes.items()):
        return False
    try:
        return (target / "lexnames").read_text(encoding="utf-8") == lexnames_text() and all(
            (target / k).stat().st_size == v for k, v in files.items())
    except OSError:
        return False


def _refuse(target: Path):
    raise AdvvizError(f"{target} exists and advviz did not write it; advviz builds its WordNet corpus there: "
                      f"move it away, or set ${CACHE_ENV} to another folder")


def _build(source: Path, target: Path, sizes: dict[str, int]) -> None:
    """Copy ``source``'s files and write ``lexnames`` into a hidden sibling of ``target``, then
    rename it into place (replacing only a previous advviz build)."""
    if os.path.lexists(target) and _ours(target) is None:
        _refuse(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    tmp.mkdir()  # outside the cleanup: a name we failed to create is not ours to remove
    try:
        for name in COPIED:
            shutil.copyfile(source / name, tmp / name)  # copies: NLTK 3.10 refuses links
        (tmp / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        (tmp / MARKER).write_text(dumps({"source": str(source), "files": sizes}, indent=1) + "\n",
                                  encoding="utf-8")
        if os.path.lexists(target):
            marker = _ours(target)
            if marker is not None and _complete(target, marker, sizes):
                return  # another process finished the same build meanwhile: keep it (it may be reading it)
            if marker is None:
                _refuse(target)
        replace_dir(tmp, target)  # only an advviz build (its marker, checked above) is replaced
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def ensure(source: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> str:
    """Make NLTK's ``wordnet`` corpus readable (see the module docstring; ``source``: the Debian
    files, default :data:`DEBIAN_DIR`; ``cache``: advviz's NLTK data folder, default
    :func:`cache_dir`); returns where it comes from. Nothing found is one line naming what to
    install; a cache folder advviz cannot write, or a foreign directory where it would build, is one
    line too."""
    import nltk  # lazy: nltk comes with the optional extra 'textattack'

    source = Path(source) if source is not None else DEBIAN_DIR
    root = Path(cache) if cache is not None else cache_dir()
    key = (str(source), str(root))
    if _STATE.get("key") == key:
        return _STATE["where"]
    target = root / "corpora" / "wordnet"
    found = _user_corpus()
    if found is not None and not Path(found).resolve().is_relative_to(root.resolve()):
        where = f"nltk_data ({found})"
    else:
        sizes = _expected(source)
        marker = _ours(target)
        if marker is None or not _complete(target, marker, sizes):
            if sizes is None:
                raise WordNetMissing(f"textattack:pwws needs WordNet, not found (no NLTK wordnet corpus, no {source}): "
                                  f"{INSTALL}")
            try:
                _build(source, target, sizes)
            except OSError as e:
                raise AdvvizError(f"could not build NLTK's WordNet corpus in {target}: {e.strerror or e}") from None
            marker = _ours(target)
            if marker is None or not _complete(target, marker, sizes):  # a concurrent build won the rename
                raise AdvvizError(f"could not build NLTK's WordNet corpus in {target}; remove that folder")
        if str(root) not in nltk.data.path:
            nltk.data.path.append(str(root))
        where = f"advviz (built from {marker['source']} in {target})"
    _STATE.update(key=key, where=where)
    return where


def missing(source: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> list[str]:
    """:func:`ensure` as a recipe's resource check: [] when WordNet is readable, else what to install."""
    try:
        ensure(source, cache)
    except WordNetMissing:
        return [INSTALL]
    return []


@contextlib.contextmanager
def no_download():
    """``nltk.download`` answers False without touching the network while the block runs (TextAttack's
    ``WordSwapWordNet`` asks for ``omw-1.4``, which English does not need)."""
    import nltk  # lazy: nltk comes with the optional extra 'textattack'

    real = nltk.download
    nltk.download = lambda *a, **k: False
    try:
        yield
    finally:
        nltk.download = real
