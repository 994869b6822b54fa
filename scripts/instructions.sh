#!/usr/bin/env bash
# Instructions per request of each request lifecycle, jisr against a hand-written raw callback
# filter doing the same work on the same allocation-free simulated host: benches/instructions.rs,
# on the lifecycles that benches/lifecycle.rs times. Counted by callgrind, so the figures do not
# move with CPU steal or frequency: the same build gives the same counts on every run.
#
# Each lifecycle and variant runs twice under callgrind, with N and 2N requests after a warm-up,
# counting only inside the measured function; instructions per request = (I(2N) - I(N)) / N, so
# setup and the call itself cancel out.
#
# Usage: scripts/instructions.sh [-n N] [--annotate K]
#   -n N          requests in the shorter run (default 1000)
#   --annotate K  then, for the K lifecycles with the worst ratios, print the jisr run's top
#                 functions by inclusive instructions per request (from callgrind_annotate)
# Installs valgrind from Debian if it is missing. Builds the bench profile (release with debug
# line tables). Callgrind's files stay in target/instructions/ for callgrind_annotate.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

n=1000
annotate=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="${2:?-n needs a count}"; shift 2 ;;
    --annotate) annotate="${2:?--annotate needs a count}"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "instructions.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$n$annotate" in
  *[!0-9]*) echo "instructions.sh: -n and --annotate take whole numbers" >&2; exit 2 ;;
esac
[ "$n" -gt 0 ] || { echo "instructions.sh: -n must be at least 1" >&2; exit 2; }

if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_annotate >/dev/null 2>&1; then
  echo "== installing valgrind" >&2
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && apt-get install -y valgrind
  else
    sudo apt-get update && sudo apt-get install -y valgrind
  fi
fi
if ! command -v valgrind >/dev/null 2>&1; then
  echo "instructions.sh: valgrind is not installed" >&2
  exit 1
fi

echo "== building benches/instructions.rs (bench profile)" >&2
if ! json=$(cargo bench --no-run --bench instructions --message-format=json); then
  echo "instructions.sh: could not build the instructions bench" >&2
  exit 1
fi
exe=$(printf '%s\n' "$json" | grep -o '"executable":"[^"]*/instructions-[^"]*"' \
  | tail -n 1 | cut -d'"' -f4 || true)
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "instructions.sh: cargo named no instructions bench executable" >&2
  exit 1
fi

out=target/instructions
mkdir -p "$out"
rm -f "$out"/*.out "$out"/*.log

# Instructions counted in one run: `count KEY VARIANT REQUESTS`.
count() {
  local file="$out/$1-$2-$3"
  if ! valgrind --tool=callgrind --collect-atstart=no \
      --toggle-collect=jisr_instructions_measured \
      --callgrind-out-file="$file.out" "$exe" run "$1" "$2" "$3" >"$file.log" 2>&1; then
    cat "$file.log" >&2
    echo "instructions.sh: callgrind failed on $1 $2 $3" >&2
    return 1
  fi
  local total
  total=$(sed -n 's/^totals: *\([0-9][0-9]*\).*/\1/p' "$file.out")
  if [ -z "$total" ] || [ "$total" -eq 0 ]; then
    echo "instructions.sh: no instructions counted in $file.out" >&2
    return 1
  fi
  echo "$total"
}

# Instructions per request: `per_request KEY VARIANT`.
per_request() {
  local a b
  a=$(count "$1" "$2" "$n")
  b=$(count "$1" "$2" $((2 * n)))
  awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }'
}

cases=$("$exe" list)
[ -n "$cases" ] || { echo "instructions.sh: the bench lists no lifecycle" >&2; exit 1; }

rows=""
echo >&2
printf '%-32s %10s %10s %9s %9s %6s\n' "lifecycle" "jisr" "raw" "jisr/raw" "jisr-raw" "goal"
while IFS=$'\t' read -r key name goal; do
  j=$(per_request "$key" jisr)
  r=$(per_request "$key" raw)
  row=$(awk -v name="$name" -v j="$j" -v r="$r" -v g="$goal" \
    'BEGIN { printf "%-32s %10.1f %10.1f %9.3f %9.1f %6s", name, j, r, j / r, j - r, g }')
  echo "$row"
  rows+="$key"$'\t'"$(awk -v j="$j" -v r="$r" 'BEGIN { printf "%.6f", j / r }')"$'\n'
done <<<"$cases"
echo "Instructions per request (callgrind Ir; runs of $n and $((2 * n)) requests after a warm-up)."
echo "goal: the jisr/raw time ratio aimed for (benches/lifecycle.rs)."

if [ "$annotate" -gt 0 ]; then
  command -v callgrind_annotate >/dev/null 2>&1 \
    || { echo "instructions.sh: callgrind_annotate is missing" >&2; exit 1; }
  # awk, not head: head would end the pipe early, and pipefail would take that as a failure.
  worst=$(printf '%s' "$rows" | sort -t$'\t' -k2,2 -g -r \
    | awk -v k="$annotate" 'NR <= k { print $1 }')
  for key in $worst; do
    echo
    echo "== jisr, $key: top functions by inclusive instructions per request (callgrind_annotate)"
    callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$out/$key-jisr-$n.out" \
      >"$out/$key-jisr-$n.annotate"
    # Inlined code splits a function into one entry per source file, nested in one another:
    # keep each function once, with its largest (outermost) inclusive count. Frames outside
    # the measured function (main, the runtime's start) count everything and are left out.
    awk -v n="$n" '
      /PROGRAM TOTALS/ { total = $1; gsub(",", "", total); next }
      /file:function/ { listing = 1; next }
      listing && /^ *[0-9,]+ +\(/ {
        count = $1; gsub(",", "", count)
        fn = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", fn); sub(/ \[[^]]*\]$/, "", fn)
        sub(/^[^:]*:/, "", fn)
        if (fn ~ /^(main|\(below main\)|0x[0-9a-f]+|__libc_start_main.*|instructions::main)$/ \
            || fn ~ /^std::(rt|sys::backtrace)::/ || fn == "jisr_instructions_measured") next
        if (count + 0 > best[fn] + 0) best[fn] = count
      }
      END {
        printf "%10s %7s  %s\n", "Ir/request", "share", "function (inclusive)"
        for (fn in best) printf "%10.1f %6.1f%%  %s\n", best[fn] / n, 100 * best[fn] / total, fn
      }' "$out/$key-jisr-$n.annotate" | sort -k1,1 -g -r | awk 'NR <= 30'
  done
fi
