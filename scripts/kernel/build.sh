#!/usr/bin/env bash
# Builds the oracle kernel: Debian's linux-source-6.12 plus the v7 staging
# series (patches/), our one-line shim (shim.patch) and the config fragment
# (config.fragment), as an x86_64 bzImage for QEMU. See README.md here.
#
# The result is cached outside the clone, keyed by the SHA-256 of the
# patches, the shim, the fragment, the source tarball's name and the
# recipe number below:
#   ${IMASIM_KERNEL_CACHE:-/var/cache/imasim-kernel}/<key>/bzImage
# (~/.cache/imasim-kernel when /var/cache is not writable).
# A second run with the same inputs only prints that path. The last line of
# the output is always the path of the bzImage; "build.sh --path" prints
# only that path, building nothing.
#
# Every hunk for security/integrity/ima/ima_kexec.c is dropped before the
# patches are applied: that file is built only with CONFIG_HAVE_IMA_KEXEC
# (x86: KEXEC_FILE), which the fragment disables, and four of its hunks do
# not apply to 6.12 (see README.md). Any other hunk that fails stops the
# build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${IMASIM_KERNEL_SOURCE:-/usr/src/linux-source-6.12.tar.xz}
cache=${IMASIM_KERNEL_CACHE:-/var/cache/imasim-kernel}
if [ -z "${IMASIM_KERNEL_CACHE:-}" ] && ! [ -w /var/cache ]; then # not root
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/imasim-kernel
fi

# recipe names the build steps below: change it when they change what is
# built (not for comments or --path), so that caches are rebuilt.
recipe=1
key=$( (cd "$here" && sha256sum config.fragment shim.patch patches/*.eml; basename "$src"; echo "recipe $recipe") |
  sha256sum | cut -c1-16)
out=$cache/$key
if [ "${1:-}" = --path ]; then # where the kernel is (or will be), and nothing else
  echo "$out/bzImage"
  exit 0
fi
if [ -f "$out/bzImage" ]; then
  echo "cached: $out/bzImage"
  echo "$out/bzImage"
  exit 0
fi

[ -f "$src" ] || { echo "build.sh: $src is missing (apt-get install linux-source-6.12)" >&2; exit 1; }

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$SECONDS

echo "== extract $(basename "$src")"
tar -xf "$src" -C "$work"
tree=$(echo "$work"/linux-source-*)
[ -d "$tree" ] || { echo "build.sh: no linux-source-* directory in $src" >&2; exit 1; }

echo "== apply the v7 series (ima_kexec.c hunks dropped: no kexec in this kernel)"
for p in "$here"/patches/v7-*.eml; do
  # Drop each "diff --git a/security/integrity/ima/ima_kexec.c" section,
  # up to the next file's diff or the signature line "-- ".
  filtered=$work/$(basename "$p" .eml).patch
  awk -v dropped="$work/dropped" '
    /^diff --git / { skip = ($3 == "a/security/integrity/ima/ima_kexec.c") }
    /^-- $/ { skip = 0 }
    skip && /^@@ / { n++ }
    !skip { print }
    END { print n + 0 > dropped }
  ' "$p" >"$filtered"
  printf '%s: ' "$(basename "$p")"
  n=$(cat "$work/dropped")
  [ "$n" = 0 ] || printf '%s ima_kexec.c hunk(s) dropped; ' "$n"
  if ! grep -q '^diff --git ' "$filtered"; then
    echo "nothing else in it"; continue
  fi
  if ! (cd "$tree" && patch -p1 --forward --batch --no-backup-if-mismatch -r - <"$filtered" >"$work/patch.log"); then
    echo "FAILED"; cat "$work/patch.log"; exit 1
  fi
  echo "applied"
done
echo "shim.patch: $(cd "$tree" && patch -p1 --forward --batch --no-backup-if-mismatch -r - <"$here/shim.patch" >/dev/null && echo applied)"

echo "== configure: tinyconfig + config.fragment + olddefconfig"
(cd "$tree" && make -s tinyconfig >/dev/null &&
  scripts/kconfig/merge_config.sh -m .config "$here/config.fragment" >/dev/null &&
  make -s olddefconfig >/dev/null)
# Every option the fragment sets must have survived olddefconfig.
missing=0
while IFS= read -r line; do
  case $line in ''|'#'*) continue ;; esac
  opt=${line%%=*}; val=${line#*=}
  if [ "$val" = n ]; then
    grep -q "^$opt=" "$tree/.config" && { echo "config: $opt is set, want n"; missing=1; }
  else
    grep -qx "$line" "$tree/.config" || { echo "config: $line did not stick"; missing=1; }
  fi
done <"$here/config.fragment"
[ "$missing" = 0 ] || exit 1

echo "== make -j$(nproc) bzImage"
(cd "$tree" && make -s -j"$(nproc)" KBUILD_BUILD_TIMESTAMP="Fri Jun  5 17:22:36 UTC 2026" KBUILD_BUILD_USER=imasim \
  KBUILD_BUILD_HOST=imasim bzImage)

mkdir -p "$out.tmp"
cp "$tree/arch/x86/boot/bzImage" "$tree/.config" "$out.tmp/"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "built in $((SECONDS - start))s: $out/bzImage"
echo "$out/bzImage"
