#!/usr/bin/env bash
# WordNet 3.0 for textattack:pwws, offline: Debian's wordnet-base and wordnet-sense-index, from which
# advviz builds NLTK's wordnet corpus at first use (advviz/analysis/discrete/wordnet.py). Installed where
# apt-get is available and we are root (or sudo -n works); skipped quietly otherwise (pwws then says
# in one line what to install). Usage: .ci/wordnet.sh
set -uo pipefail
PKGS="wordnet-base wordnet-sense-index"
if [ -f /usr/share/wordnet/data.noun ] && [ -f /usr/share/wordnet/index.sense ]; then exit 0; fi
command -v apt-get >/dev/null 2>&1 || exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else exit 0; fi
export DEBIAN_FRONTEND=noninteractive
install() { $SUDO apt-get install -y -qq --no-install-recommends $PKGS >/dev/null; }
if install || { $SUDO apt-get update -qq >/dev/null && install; }; then
    echo "wordnet: installed $PKGS (advviz builds NLTK's corpus from /usr/share/wordnet at first use)"
else
    echo "wordnet: could not install $PKGS; textattack:pwws will say what to install" >&2
fi
exit 0
