#!/usr/bin/env bash
# The nightly-style long fuzz run: every fuzz target of the given packages
# (default: the parsers, ./ima/template and ./ima/eventlog; "all" for every
# package) for EXECS executions each, one target after the other.
#
#   scripts/fuzz-long.sh [EXECS] [PACKAGE...]     (default EXECS: 300000x)
#
#   scripts/fuzz-long.sh                          # the parsers, 300,000 each
#   scripts/fuzz-long.sh 2000000x all             # every target, 2 million each
#
# A count, not a duration: go1.26's duration-bounded fuzzing can fail a
# healthy run at its deadline. FUZZ_PARALLEL sets -parallel (default:
# GOMAXPROCS). A crasher is written by `go test` under the package's
# testdata/fuzz/<Target>/, where it stays as a regression input once the
# bug is fixed; the script stops with the failing target's status. The
# last line of each target ("fuzz: elapsed: ..., execs: N") is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

execs=${1:-300000x}
shift || true
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  pkgs=(./ima/template ./ima/eventlog)
elif [ "${pkgs[0]}" = all ]; then
  mapfile -t pkgs < <(go list ./...)
fi
par=()
if [ -n "${FUZZ_PARALLEL:-}" ]; then
  par=(-parallel "$FUZZ_PARALLEL")
fi

for pkg in "${pkgs[@]}"; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    log=$(mktemp)
    echo "== $pkg $target ($execs)"
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$execs" "${par[@]}" "$pkg" >"$log" 2>&1; then
      cat "$log"
      rm -f "$log"
      echo "fuzz-long: $pkg $target failed" >&2
      exit 1
    fi
    grep 'execs:' "$log" | tail -1
    rm -f "$log"
  done
done
