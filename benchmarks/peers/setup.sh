#!/usr/bin/env bash
# Set up OpenNMT-py 3.5.1 and JoeyNMT 2.3.0, each in its own virtualenv, next to the CPU build of
# torch 2.13.0. Opt-in: `make peers` runs it; `make test` never does. Re-running skips what is done.
#
#   bash benchmarks/peers/setup.sh [DIR]      (default: benchmarks/results/peers)
set -euo pipefail
PYTHON=${PYTHON:-python3}
DIR=${1:-benchmarks/results/peers}
mkdir -p "$DIR"

# OpenNMT-py pins torch<2.3, which would pull a multi-GB CUDA build: install it without its
# dependencies and add those by hand.
if [ ! -f "$DIR/venv-onmt/.installed" ]; then
    "$PYTHON" -m venv "$DIR/venv-onmt"
    "$DIR/venv-onmt/bin/pip" install --quiet torch==2.13.0
    "$DIR/venv-onmt/bin/pip" install --quiet --no-deps OpenNMT-py==3.5.1
    "$DIR/venv-onmt/bin/pip" install --quiet configargparse 'ctranslate2<5,>=4' 'tensorboard>=2.3' \
        flask waitress 'pyonmttok<2,>=1.37' pyyaml sacrebleu rapidfuzz pyahocorasick \
        fasttext-wheel spacy six numpy
    touch "$DIR/venv-onmt/.installed"
fi

# JoeyNMT installs with torch already there; importlib_metadata is a need it does not declare.
if [ ! -f "$DIR/venv-joey/.installed" ]; then
    "$PYTHON" -m venv "$DIR/venv-joey"
    "$DIR/venv-joey/bin/pip" install --quiet torch==2.13.0
    "$DIR/venv-joey/bin/pip" install --quiet joeynmt==2.3.0 importlib_metadata
    touch "$DIR/venv-joey/.installed"
fi
echo "peers ready in $DIR"
