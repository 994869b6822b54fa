#!/usr/bin/env bash
# Instructions per byte of the SSE parser, the usage tracker and a bare `memchr` line scan on
# the streams of benches/sse.rs, counted by callgrind: unlike the MiB/s figures, they do not
# move with CPU steal or frequency. Each function runs over its stream 2 and 6 times; the
# difference divided by 4 stream lengths cancels the set-up (building the input).
#
# Usage: scripts/sse_instructions.sh
# Installs valgrind from Debian if it is missing; builds the bench profile.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
  echo "== installing valgrind" >&2
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && apt-get install -y valgrind
  else
    sudo apt-get update && sudo apt-get install -y valgrind
  fi
fi

echo "== building benches/sse.rs (bench profile)" >&2
json=$(cargo bench --no-run --bench sse --message-format=json)
exe=$(printf '%s\n' "$json" | grep -o '"executable":"[^"]*/sse-[^"]*"' | tail -n 1 | cut -d'"' -f4 || true)
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "sse_instructions.sh: cargo named no sse bench executable" >&2
  exit 1
fi

# Instructions of one run: `total INPUT WHAT REPS`.
total() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" count "$1" "$2" "$3" 2>&1 \
    | sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' | tr -d ,
}

printf '| stream | memchr scan | SSE parser | usage tracker |\n|---|---:|---:|---:|\n'
for input in openai-chat anthropic openai-responses; do
  bytes=$("$exe" count "$input" memchr 1 | sed -n 's/^bytes //p')
  row="| $input"
  for what in memchr sse usage; do
    a=$(total "$input" "$what" 2)
    b=$(total "$input" "$what" 6)
    if [ -z "$a" ] || [ -z "$b" ]; then
      echo "sse_instructions.sh: callgrind failed on $input $what" >&2
      exit 1
    fi
    row="$row | $(awk -v a="$a" -v b="$b" -v n="$bytes" 'BEGIN { printf "%.2f", (b - a) / (4 * n) }')"
  done
  echo "$row |"
done
echo "(instructions per byte)"
