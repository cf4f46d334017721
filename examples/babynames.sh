#!/usr/bin/env bash
# Baby names end to end: train the character model, watch it denoise, infill, and measure it.
#
#   bash examples/babynames.sh                  # the names preset, about 10 minutes on 2 CPU cores
#   PRESET=tiny MAX_STEPS=20 bash examples/babynames.sh   # a smoke run in seconds
set -euo pipefail
PRESET=${PRESET:-names}
RUN=${RUN:-runs/babynames-example}
MAX_STEPS=${MAX_STEPS:-}

# 1. train (Ctrl-C saves a checkpoint; `sedd train --resume $RUN` continues exactly)
sedd train --model "$PRESET" --run-dir "$RUN" ${MAX_STEPS:+--max-steps "$MAX_STEPS"}

# 2. sample 8 names, showing the denoising every 4 steps (live on a terminal, plain lines in a pipe)
sedd sample "$RUN" --num-samples 8 --steps 32 --show-intermediate --every 4

# 3. infill: names that start with "ma" and end with "a" ([MASK:N] = N characters to fill)
sedd infill "ma[MASK:3]a" -m "$RUN" --num-samples 5 --steps 32

# 4. the likelihood bound on the held-out names (bits per character, with a standard error)
sedd perplexity "$RUN" --data babynames --mc 4 --max-blocks 64
