#!/usr/bin/env bash
# Lays out the image's root filesystem in DEST: the agent binary, the shared libraries it loads (its
# closure, as the dynamic loader of SRC_ROOT resolves it), `chown` (the chart's dataDirInit init
# container) with its own closure, the CA bundle, and passwd/group files with root and anduin (10001).
# Nothing else: no shell, no package manager.
#
#   deploy/image/rootfs.sh SRC_ROOT BINARY DEST
#
# SRC_ROOT is a Debian tree holding the runtime packages: `/` in deploy/Dockerfile's collect stage,
# an `mmdebstrap --variant=extract` directory in deploy/image/build.sh. Run as root (it chroots into
# SRC_ROOT unless it is /). Both paths give the same layout.
set -euo pipefail

src=$(readlink -f "$1") binary=$2 dest=$3
mkdir -p "$dest"
dest=$(readlink -f "$dest")

in_src() { if [ "$src" = / ]; then "$@"; else chroot "$src" "$@"; fi; }

mkdir -p "$dest"
# Debian's merged /usr: the loader and the libraries are found under either name.
mkdir -p "$dest/usr/bin" "$dest/usr/sbin" "$dest/usr/lib" "$dest/usr/lib64" "$dest/usr/local/bin" \
         "$dest/etc/ssl/certs" "$dest/tmp" "$dest/var/lib/anduin" "$dest/var/log" "$dest/etc/anduin"
for d in bin lib lib64 sbin; do [ -e "$dest/$d" ] || ln -s "usr/$d" "$dest/$d"; done
chmod 1777 "$dest/tmp"

install -m 0755 "$binary" "$dest/usr/local/bin/anduin"

# The loader of the binary (PT_INTERP), then every library it lists.
interp=$(readelf -l "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ -n "$interp" ] || { echo "rootfs.sh: $binary has no program interpreter" >&2; exit 1; }

# Copies PATH (as seen inside SRC_ROOT) to DEST under its resolved name, and makes PATH a symlink to
# it when the names differ (libfoo.so.1 -> libfoo.so.1.2.3, /lib64/ld-linux… -> /lib/<triplet>/ld-linux…).
copy_from_src() {
  local path=$1 real
  real=$(in_src readlink -f "$path")   # inside SRC_ROOT: its symlinks may be absolute
  install -D -m 0644 "$src$real" "$dest$real"
  [ ! -x "$src$real" ] || chmod 0755 "$dest$real"
  if [ "$(readlink -m "$dest$path")" != "$(readlink -m "$dest$real")" ]; then
    mkdir -p "$(readlink -m "$dest$(dirname "$path")")"
    ln -sfn "$real" "$(readlink -m "$dest$(dirname "$path")")/$(basename "$path")"
  fi
}

closure() {
  # `ld.so --list` prints "name => /path (0x...)" and the loader's own line "/lib64/ld-... (0x...)".
  local out
  out=$(in_src "$interp" --list "$1")
  if grep -q "not found" <<<"$out"; then
    echo "rootfs.sh: libraries of $1 missing from $src:" >&2; grep "not found" <<<"$out" >&2; exit 1
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$out"
}

tmpbin=""
if [ "$src" != / ]; then
  tmpbin=/.anduin-rootfs-probe
  install -m 0755 "$binary" "$src$tmpbin"
  trap 'rm -f "$src$tmpbin"' EXIT
fi

libs=$(closure "${tmpbin:-$binary}")
libs="$libs $(closure /bin/chown)"
copy_from_src "$interp"
for lib in $(printf '%s\n' $libs | sort -u); do
  copy_from_src "$lib"
done
copy_from_src /bin/chown

# The CA bundle libcurl reads (/etc/ssl/certs/ca-certificates.crt), made the way update-ca-certificates
# makes it: every certificate Debian's ca-certificates package ships, concatenated.
if [ -s "$src/etc/ssl/certs/ca-certificates.crt" ]; then
  install -m 0644 "$src/etc/ssl/certs/ca-certificates.crt" "$dest/etc/ssl/certs/ca-certificates.crt"
else
  find "$src/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | xargs cat \
    > "$dest/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$dest/etc/ssl/certs/ca-certificates.crt"
fi
[ -s "$dest/etc/ssl/certs/ca-certificates.crt" ] || { echo "rootfs.sh: no CA certificates in $src" >&2; exit 1; }

# The tz database the parse filter's `time_zone: Europe/Berlin` reads (plugins/filter_parse/ZoneInfo.swift);
# not the leap-second variants under right/.
if [ -d "$src/usr/share/zoneinfo" ]; then
  mkdir -p "$dest/usr/share/zoneinfo"
  tar -C "$src/usr/share/zoneinfo" --exclude=./right -cf - . | tar -C "$dest/usr/share/zoneinfo" -xf -
fi

# Names for the two users the image runs as: root (the chart's default) and anduin (10001).
cat > "$dest/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
anduin:x:10001:10001:anduin:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat > "$dest/etc/group" <<'EOF'
root:x:0:
anduin:x:10001:
nogroup:x:65534:
EOF
echo "hosts: files dns" > "$dest/etc/nsswitch.conf"
: > "$dest/etc/hosts"
: > "$dest/etc/resolv.conf"
chown 10001:10001 "$dest/var/lib/anduin"
