#!/usr/bin/env bash
# The installed-wheel check (issue 27), run by `make test-wheel` in CI: build the sdist and the wheel,
# install the wheel (not the checkout) into a fresh venv, and from an empty directory outside the
# checkout, with no data directory: print the version, train a one-epoch LSTM on a data file given
# by path, then serve the app and open every page in headless Chromium (no error on any page).
# Usage: .ci/wheel-check.sh   (needs .venv/ with the dev extra and Playwright: make setup)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-python3}
VENV=${VENV:-$REPO/.venv}  # the dev venv (make setup): build and Playwright
WORK=$(mktemp -d "${TMPDIR:-/tmp}/advviz-wheel.XXXXXX")
APP_PID=""
cleanup() { [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null; rm -rf "$WORK"; }  # only what this script made
trap cleanup EXIT
DATA="${ADVVIZ_DATA_DIR:-$REPO/../shared/data}"

echo "== build (the sdist, then the wheel from the sdist: so the sdist is checked complete too)"
"$VENV/bin/python" -m build --outdir "$WORK/dist" "$REPO" > "$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; exit 1; }
ls -l "$WORK"/dist
WHEEL=$(ls "$WORK"/dist/advviz-*.whl)
python3 - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["advviz_app/streamlit_app.py", "advviz_app/appkit/shared.py", "advviz_app/views/models.py",
        "advviz/resources/nltk_data/corpora/stopwords/english", "advviz/cli.py"]
missing = [n for n in need if n not in names]
assert not missing, f"the wheel lacks {missing}"
assert not [n for n in names if n.startswith(("tests/", "app/", "benchmarks/"))], "the wheel carries the checkout"
print(f"wheel: {len(names)} files, app included")
PY

echo "== install the wheel into a fresh venv"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
"$WORK/venv/bin/pip" install -q torch==2.13.0
"$WORK/venv/bin/pip" install -q "$WHEEL"
BIN="$WORK/venv/bin"

mkdir "$WORK/empty" && cd "$WORK/empty"
unset ADVVIZ_DATA_DIR
echo "== from $(pwd), no data directory"
"$BIN/advviz" --version
"$BIN/python" - <<'PY'
import importlib.metadata as md, advviz, advviz.commands.app as a
assert md.version("advviz") == advviz.__version__, (md.version("advviz"), advviz.__version__)
assert "site-packages" in advviz.__file__, advviz.__file__
print("app entry:", a.app_file())
PY
"$BIN/advviz" data list > data-list.txt && head -4 data-list.txt
"$BIN/python" - "$DATA/sst2_sent_train.tsv.gz" > reviews.tsv <<'PY'
import gzip, itertools, sys
sys.stdout.writelines(itertools.islice(gzip.open(sys.argv[1], "rt", encoding="utf-8"), 601))  # header + 600 rows
PY
"$BIN/advviz" train --dataset reviews.tsv --arch lstm --epochs 1 --out models/reviews-lstm --quiet
"$BIN/python" -c "import json; c = json.load(open('models/reviews-lstm/config.json')); import advviz; assert c['versions']['advviz'] == advviz.__version__; print('checkpoint records advviz', c['versions']['advviz'])"

echo "== serve the app from the wheel"
PORT=$("$BIN/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$BIN/advviz" app --no-train --models-dir models --port "$PORT" > app.log 2>&1 &
APP_PID=$!
"$VENV/bin/python" "$REPO/.ci/wheel_pages.py" "http://127.0.0.1:$PORT" "$REPO/test-artifacts/wheel" reviews-lstm \
    || { cat app.log; exit 1; }
echo "wheel check: passed"
