#!/usr/bin/env bash
# Times `evmctl ima_measurement` and `imasim verify` on the same generated
# measurement list, side by side, and prints the ratio.
#
#   scripts/compare-evmctl.sh [RECORDS] [ROUNDS]     (defaults: 100000, 7)
#
# The list is the legacy binary_runtime_measurements (SHA-1 column, the only
# layout evmctl reads) of ima-ng records, built by
# ima/eventlog/internal/imagen the way a kernel with a SHA-1 + SHA-256 TPM
# would, with the PCRs of a software TPM written in evmctl's --pcrs format.
# ima-ng, because evmctl tries to verify the signature of every ima-sig
# record against the file on disk, which is not what is being compared.
#
# Both tools do the same checks: every template digest against its data
# (SHA-1), and the sha1 and sha256 banks replayed to PCR 10. First each
# result is checked (evmctl with the judge recipe of docs/SPEC.md §6.2: rc
# 0, "Matched per TPM bank calculated digest(s).", "succeed at entry N" with
# N = RECORDS for both banks, no "Failed to verify template data digest";
# imasim verify with exit 0). Then ROUNDS alternating timed runs of each,
# evmctl without -v (its fastest mode: -v writes a line per record to
# stderr), and the best and median wall-clock times and their ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

records=${1:-100000}
rounds=${2:-7}
if ! command -v evmctl >/dev/null 2>&1; then
  echo "compare-evmctl: evmctl not found (apt-get install ima-evm-utils)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# imasim verify does not use cgo (only `imasim demo --tpm simulator` does,
# for the go-tpm-tools simulator): build it the way the module supports
# without cgo, a static binary that starts without loading libcrypto (about
# 10 ms of the run). IMASIM_CGO=1 builds it with cgo instead.
CGO_ENABLED=${IMASIM_CGO:-0} go build -o "$work/imasim" ./examples/imasim
go build -o "$work/imagen" ./ima/eventlog/internal/imagen
"$work/imagen" -n "$records" -banks sha1,sha256 -template ima-ng -out "$work"
list="$work/binary_runtime_measurements"
pcrs=(--pcrs "sha1,$work/pcrs-sha1" --pcrs "sha256,$work/pcrs-sha256")

echo "list: $records ima-ng records, $(stat -c %s "$list") bytes (SHA-1 column); banks sha1 and sha256, PCR 10"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $(evmctl --version 2>&1 | head -1); $(go version | cut -d' ' -f3), imasim built with CGO_ENABLED=${IMASIM_CGO:-0}"

# Check the results once.
set +e
evmctl -v ima_measurement "${pcrs[@]}" "$list" 2>"$work/evmctl.err" >/dev/null
rc=$?
set -e
ok=1
[ "$rc" -eq 0 ] || ok=0
grep -q '^Matched per TPM bank calculated digest(s)\.$' "$work/evmctl.err" || ok=0
grep -q 'Failed to verify template data digest' "$work/evmctl.err" && ok=0
for bank in sha1 sha256; do
  last=$(sed -n "s/^$bank PCR-[0-9]*: succeed at entry \([0-9]*\)$/\1/p" "$work/evmctl.err" | sort -n | tail -1)
  [ "${last:-0}" -eq "$records" ] || ok=0
done
if [ "$ok" -ne 1 ]; then
  echo "evmctl does not accept the list (rc $rc):" >&2
  tail -5 "$work/evmctl.err" >&2
  exit 1
fi
echo "evmctl -v: judge recipe passes (rc 0, matched per bank, succeed at entry $records for sha1 and sha256)"
"$work/imasim" verify "${pcrs[@]}" "$list"

# Timed runs, alternating. bash's time builtin: wall, user, sys seconds.
TIMEFORMAT='%R %U %S'
: >"$work/t-evmctl"
: >"$work/t-imasim"
for ((i = 0; i < rounds; i++)); do
  { time evmctl ima_measurement "${pcrs[@]}" "$list" >/dev/null 2>&1; } 2>>"$work/t-evmctl"
  { time "$work/imasim" verify "${pcrs[@]}" "$list" >/dev/null 2>&1; } 2>>"$work/t-imasim"
done

# stats FILE prints: best-wall median-wall median-cpu(user+sys)
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.3f", v[int((NR + 1) / 2)] }'; }
stats() {
  echo "$(cut -d' ' -f1 "$1" | sort -n | head -1) $(cut -d' ' -f1 "$1" | median) $(awk '{ print $2 + $3 }' "$1" | median)"
}
read -r eb em ec < <(stats "$work/t-evmctl")
read -r ib im ic < <(stats "$work/t-imasim")

printf '\n%-28s %10s %10s %12s\n' "" "best (s)" "median (s)" "median CPU"
printf '%-28s %10s %10s %12s\n' "evmctl ima_measurement" "$eb" "$em" "$ec"
printf '%-28s %10s %10s %12s\n' "imasim verify" "$ib" "$im" "$ic"
awk -v eb="$eb" -v em="$em" -v ec="$ec" -v ib="$ib" -v im="$im" -v ic="$ic" -v n="$records" 'BEGIN {
  printf "\nimasim verify is %.1fx faster than evmctl (best of %s runs each; median %.1fx; CPU time %.1fx)\n", eb / ib, '"$rounds"', em / im, ec / ic
  printf "imasim: %.0f records/s; evmctl: %.0f records/s\n", n / ib, n / eb
}'
