#!/usr/bin/env bash
# Drives a simulated securityfs mounted with `imasim mount --measure 20 DIR`
# with the tools an operator has: echo, cat, dd, setpriv. Run as root.
#
#   usage: mount.sh IMASIM DIR
#
# Each check prints a FAIL line when it fails; the last line counts them.
set -u
imasim=$1 d=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
staged=$d/binary_runtime_measurements_staged
orig=$d/binary_runtime_measurements
pass=0 failed=0

ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: COMMAND must succeed.
check() {
	local what=$1; shift
	if "$@"; then ok; else bad "$what"; fi
}
# expect ERRTEXT DESCRIPTION COMMAND...: COMMAND must fail, printing ERRTEXT.
expect() {
	local want=$1 what=$2; shift 2
	local err
	if err=$("$@" 2>&1 >/dev/null); then
		bad "$what: succeeded, want '$want'"
		return
	fi
	case $err in
	*"$want"*) ok ;;
	*) bad "$what: got '$err', want '$want'" ;;
	esac
}
count() { cat "$d/runtime_measurements_count"; }
lines() { wc -l <"$1" | tr -d ' '; }
sh_echo() { bash -c "echo $1 > $2"; }

# --- reads: the count, the ASCII lines and the binary list agree, whatever
# the read size and offsets.
n=$(count)
check "count ($n) is the boot_aggregate and the files (duplicates rejected)" [ "$n" -gt 10 ]
check "ASCII list has $n lines" [ "$(lines "$d/ascii_runtime_measurements")" -eq "$n" ]
cat "$orig" >"$tmp/list.bin"
check "dd bs=7 reads what cat reads" cmp -s "$tmp/list.bin" <(dd if="$orig" bs=7 status=none)
tail -c +4097 "$tmp/list.bin" >"$tmp/tail.bin"
check "dd skip (lseek) reads from the offset" cmp -s "$tmp/tail.bin" <(dd if="$orig" bs=4096 skip=1 status=none)
check "ls shows the legacy link" [ "$(readlink "$orig")" = binary_runtime_measurements_sha1 ]

# --- prompt flavour, as the documentation writes it: A, read, D.
check "echo A > _staged" sh_echo A "$staged"
cat "$staged" >"$tmp/staged.bin"
check "the staged list is the list read before A" cmp -s "$tmp/staged.bin" "$tmp/list.bin"
check "nothing left in the current list" [ "$(count)" -eq 0 ]
expect "File exists" "A twice is EEXIST" sh_echo A "$staged"
check "echo D > _staged" sh_echo D "$staged"
check "staged list empty after D" [ "$(lines "$d/ascii_runtime_measurements_staged")" -eq 0 ]
expect "No such file or directory" "D with nothing staged is ENOENT" sh_echo D "$staged"
expect "No such file or directory" "A with nothing to stage is ENOENT" sh_echo A "$staged"

# --- prompt flavour on one read-write descriptor (what an agent does).
for i in 1 2 3; do "$imasim" ctl "$d" measure --content "fd cycle $i" "/opt/fd-$i" >/dev/null; done
cat "$orig" >"$tmp/before.bin"
(
	exec 3<>"$staged"
	echo A >&3 || exit 1
	cat <&3 >"$tmp/fd.bin" || exit 1
	echo D >&3 || exit 1
)
check "A, read, D on one descriptor" [ $? -eq 0 ]
check "read on the writer's descriptor gives the staged list" cmp -s "$tmp/fd.bin" "$tmp/before.bin"

# --- N on the original file.
for i in 1 2 3 4 5; do "$imasim" ctl "$d" measure --content "n $i" "/opt/n-$i" >/dev/null; done
check "five records in the current list" [ "$(count)" -eq 5 ]
tail -n +3 "$d/ascii_runtime_measurements" >"$tmp/rest.txt"
check "echo 2 > binary_runtime_measurements" sh_echo 2 "$orig"
# cmp would compare the sizes first: securityfs files report size 0.
check "N deleted the first two" cmp -s "$tmp/rest.txt" <(cat "$d/ascii_runtime_measurements")
expect "Invalid argument" "N on a _staged file is EINVAL" sh_echo 1 "$staged"
expect "No such file or directory" "N beyond the list is ENOENT" sh_echo 4 "$orig"
expect "Numerical result out of range" "N above ULONG_MAX is ERANGE" sh_echo 18446744073709551616 "$orig"
check "echo 3 > binary_runtime_measurements" sh_echo 3 "$orig"

# --- one writer: a second task gets EBUSY, readers too.
"$imasim" ctl "$d" measure --content busy /opt/busy >/dev/null
(
	failed=0
	exec 3>"$staged" # O_TRUNC: accepted, as securityfs does
	expect "Device or resource busy" "a second writer is EBUSY" sh_echo A "$staged"
	expect "Device or resource busy" "a reader while a writer holds the list is EBUSY" cat "$orig"
	echo A >&3 && echo D >&3 || exit 1
	exit $failed
)
[ $? -eq 0 ] && ok || bad "the writer's own A and D, or a check above"

# --- CAP_SYS_ADMIN dropped: EPERM for write, reads still allowed.
"$imasim" ctl "$d" measure --content cap /opt/cap >/dev/null
expect "Operation not permitted" "a write open without CAP_SYS_ADMIN is EPERM" \
	setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin bash -c "echo A > $staged"
check "a read without CAP_SYS_ADMIN works" \
	setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin cat "$d/runtime_measurements_count" >/dev/null
expect "Permission denied" "uid 1000 cannot read (0440 root:root)" \
	setpriv --reuid=1000 --regid=1000 --clear-groups cat "$d/runtime_measurements_count"
expect "Permission denied" "files cannot be created" sh_echo A "$d/new_file"

# --- kexec between A and D: D on the old kernel is ESTALE, reads EIO; the
# staged records ride along into the new kernel.
(
	failed=0
	exec 3<>"$staged"
	echo A >&3 || exit 1
	"$imasim" ctl "$d" kexec >/dev/null || exit 1
	expect "Stale file handle" "D after kexec is ESTALE" bash -c 'echo D >&3'
	expect "Input/output error" "a read of the old kernel's file is EIO" cat <&3
	exit $failed
)
[ $? -eq 0 ] && ok || bad "A before kexec, or a check above"
check "the staged record is carried into the new kernel (it, boot_aggregate)" [ "$(count)" -eq 2 ]
check "echo A > _staged on the new kernel" sh_echo A "$staged"
check "echo D > _staged on the new kernel" sh_echo D "$staged"

# --- docs/SPEC.md Q4 with real processes: the writer holds two descriptors, a child
# inherits them; the child's exit releases the first file, the writer's close
# the second. Every later writer gets EBUSY, as in the kernel, until reboot.
(
	exec 3<>"$staged" 4<>"$staged"
	sleep 1 &  # long enough for the writer to close fd 3 first, even on a loaded machine
	exec 3>&-
	wait
	exec 4>&-
)
expect "Device or resource busy" "Q4: after a release by a child, writers are locked out" sh_echo A "$staged"
check "Q4: readers still work" cat "$d/runtime_measurements_count" >/dev/null
"$imasim" ctl "$d" reboot >/dev/null
check "after reboot only boot_aggregate" [ "$(count)" -eq 1 ]
check "after reboot writers are admitted again" sh_echo A "$staged"

echo "mount.sh: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
