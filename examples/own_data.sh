#!/usr/bin/env bash
# Your own text file end to end: one document per line, a character model, sample, evaluate.
#
#   bash examples/own_data.sh my_corpus.txt
#   PRESET=tiny MAX_STEPS=20 bash examples/own_data.sh my_corpus.txt   # a smoke run
set -euo pipefail
DATA=${1:?usage: own_data.sh FILE.txt}
PRESET=${PRESET:-names}
RUN=${RUN:-runs/own-data-example}
MAX_STEPS=${MAX_STEPS:-2000}

# one record per line, padded to the model length, characters as tokens (vocabulary from the file)
sedd train --data "$DATA" --tokenizer char --layout pad --model "$PRESET" \
  --run-dir "$RUN" --max-steps "$MAX_STEPS"
sedd info "$RUN"
sedd sample "$RUN" --num-samples 4 --steps 32 --out "$RUN/samples.txt"
cat "$RUN/samples.txt"
sedd perplexity "$RUN" --data "$DATA" --mc 4 --json
