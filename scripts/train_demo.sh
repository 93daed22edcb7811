#!/usr/bin/env bash
# Train the bundled demo model from nothing, measure it, and install it into the package.
#
#   make synth-deps music-deps     # once, as root: FluidSynth, eSpeak NG, the Wesnoth music (Debian packages)
#   scripts/train_demo.sh [WORK]   # default WORK=runs/demo; about 3 h 45 min on 2 CPU cores
#
# 1. scripts/train_lyrics_model.py --preset demo: 160 synthetic sung songs (136 to train, 8 dev songs held out,
#    16 held out for the measurements) + the 41 Wesnoth tracks; VQ-VAE `demo`; the lyric top prior `demo` and the two
#    upsamplers side by side; then all three again with label dropout (for classifier-free guidance), the
#    upsamplers' windows drawn genre-balanced (--balance genre); then the top prior again with the alignment loss
#    (its alignment head learns to attend to the sung character); forced alignment of the held-out songs
#    (WORK/align.json). Every step is skipped when its output is there, so a stopped run continues.
# 2. The model folder's configs, vocabularies and weights are copied to src/openjukebox/models/demo.
# 3. scripts/model_card.py measures it and fills in MODEL_CARD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
PY=${PYTHON:-.venv/bin/python}
DEST=src/openjukebox/models/demo

OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$PY" scripts/train_lyrics_model.py --preset demo --work "$WORK" --device cpu

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
for part in vqvae prior_level_2 prior_level_1 prior_level_0; do
  mkdir "$DEST.tmp/$part"
  cp "$WORK/model/$part"/*.json "$WORK/model/$part/model.safetensors" "$DEST.tmp/$part/"
done
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "demo model installed in $DEST ($(du -sh "$DEST" | cut -f1))"

OMP_NUM_THREADS=1 "$PY" scripts/model_card.py --work "$WORK" --model "$DEST" --card MODEL_CARD.md
