#!/usr/bin/env bash
# Regenerates docs/GOODPUT.md: bulk TCP goodput between two user-space stacks over the in-memory link, under each
# impairment profile, for CUBIC and NewReno (see `demi goodput --help`). No privileges needed.
# Usage: scripts/goodput.sh [extra demi goodput options, e.g. --bytes 8388608]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${SCRATCH:-.build}"
swift build -c release --scratch-path "$scratch" --product demi
"$scratch/release/demi" goodput --output docs/GOODPUT.md "$@"
