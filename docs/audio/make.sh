#!/usr/bin/env bash
# The audio examples on the "Hearing it" page, made by bachd with the shipped default model and
# the TimGM6mb General MIDI SoundFont (Debian's timgm6mb-soundfont), then encoded as Ogg Vorbis.
#
#   bash docs/audio/make.sh            (from the repository, with .venv set up; needs `pip install soundfile`)
set -euo pipefail
cd "$(dirname "$0")"
bachd=../../.venv/bin/bachd
python=../../.venv/bin/python
font=/usr/share/sounds/sf2/TimGM6mb.sf2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A chorale from nothing, in G minor, eight bars.
$bachd generate --key "G minor" --bars 8 --rng-seed 7 --bpm 72 -o "$work/chorale.mid"

# A melody harmonized live: the soprano of BWV 269's first eight bars, played into the live harmonizer
# (the harmonizer preset, on a simulated clock, no look-ahead).
$python - "$work/melody.mid" <<'PY'
import sys
from music21 import corpus
part = corpus.parse("bach/bwv269").parts[0]
part.measures(0, 8).write("midi", fp=sys.argv[1])
PY
$bachd harmonize "$work/melody.mid" -o "$work/harmonized.mid" --preset harmonizer --bpm 72 --rng-seed 2

# A call and bachd's answer: the first two bars of that melody, answered with two bars in continue mode.
$python - "$work/call.mid" <<'PY'
import sys
from music21 import corpus
corpus.parse("bach/bwv269").parts[0].measures(0, 2).write("midi", fp=sys.argv[1])
PY
$bachd continue "$work/call.mid" -o "$work/answer.mid" --bpm 72 --response-bars 2 --rng-seed 4

for name in chorale harmonized answer; do
  $bachd render "$work/$name.mid" -o "$work/$name.wav" --soundfont "$font" --sample-rate 32000
  $python - "$work/$name.wav" "$name.ogg" <<'PY'
import sys
import soundfile
audio, rate = soundfile.read(sys.argv[1])
soundfile.write(sys.argv[2], audio, rate, format="OGG", subtype="VORBIS")
PY
done
ls -l ./*.ogg
