#!/usr/bin/env bash
# `make image`: the agent's OCI image, built on this machine with no registry.
#
#   1. the release binary (static Swift runtime, stripped);
#   2. Debian's runtime packages for it, from the pinned suite, unpacked by
#      `mmdebstrap --variant=extract` (no maintainer scripts; cached in .build/image/base-*), and
#      libcurl built from Debian's source of that suite for HTTP and HTTPS only (deploy/image/libcurl.sh;
#      cached in .build/image/libcurl-*) in place of the libcurl4 package;
#   3. deploy/image/rootfs.sh keeps only the binary's library closure, chown, the CA bundle and
#      passwd/group (deploy/Dockerfile's last stages give the same layout);
#   4. `podman import` with the entrypoint, user and stop signal of deploy/Dockerfile.
#
# Needs root (chroot, podman) and the apt packages podman buildah mmdebstrap runc (`make image`
# installs them). ANDUIN_IMAGE overrides the tag (default anduin:<appVersion of the chart>).
set -euo pipefail
cd "$(dirname "$0")/../.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What the binary links (zlib, libdeflate, liblz4, libpcre2, libyaml, the C++ runtime; libssl and nghttp2
# for the libcurl built below) and chown, and tzdata (the parse filter's time_zone names); apt adds their
# dependencies. rootfs.sh fails if the loader cannot resolve a library.
PACKAGES=libc6,libgcc-s1,libstdc++6,libssl3,libnghttp2-14,zlib1g,libdeflate0,liblz4-1,libpcre2-8-0,libyaml-0-2,tzdata,coreutils,ca-certificates
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/helm/anduin/Chart.yaml)
IMAGE=${ANDUIN_IMAGE:-anduin:$VERSION}
WORK=.build/image

[ "$(id -u)" = 0 ] || { echo "make image: needs root (chroot into the Debian tree, podman import)" >&2; exit 1; }
mkdir -p "$WORK"
started=$SECONDS

echo "image: release binary (swift build -c release --static-swift-stdlib)"
swift build -c release --static-swift-stdlib --product anduin
bin="$(swift build -c release --static-swift-stdlib --show-bin-path)/anduin"
install -m 0755 "$bin" "$WORK/anduin"
strip "$WORK/anduin"

base="$WORK/base-$SUITE-$(echo "$PACKAGES" | sha256sum | cut -c1-12)"
if [ ! -e "$base/.complete" ]; then
  echo "image: Debian $SUITE runtime packages (mmdebstrap --variant=extract)"
  rm -rf "$base"
  mmdebstrap --quiet --variant=extract --mode=root --include="$PACKAGES" "$SUITE" "$base" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main"
  touch "$base/.complete"
fi

curl="$WORK/libcurl-$SUITE-$(sha256sum deploy/image/libcurl.sh | cut -c1-12)"
if [ ! -e "$curl/.complete" ]; then
  echo "image: libcurl from Debian's $SUITE source, HTTP and HTTPS only (deploy/image/libcurl.sh)"
  rm -rf "$curl"
  deploy/image/libcurl.sh "$SUITE" "$curl"
  touch "$curl/.complete"
fi
cp -a "$curl/usr" "$base/"

rm -rf "$WORK/rootfs"
deploy/image/rootfs.sh "$base" "$WORK/anduin" "$WORK/rootfs"
tar -C "$WORK/rootfs" --numeric-owner --sort=name --mtime=@0 -cf "$WORK/rootfs.tar" .

old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
podman import --quiet \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'STOPSIGNAL SIGTERM' \
  --change 'ENTRYPOINT ["/usr/local/bin/anduin", "run", "--config", "/etc/anduin/anduin.yaml"]' \
  --change "LABEL org.opencontainers.image.title=anduin org.opencontainers.image.version=$VERSION" \
  "$WORK/rootfs.tar" "$IMAGE" >/dev/null
new=$(podman image inspect --format '{{.Id}}' "$IMAGE")
[ -z "$old" ] || [ "$old" = "$new" ] || podman rmi --force "$old" >/dev/null 2>&1 || true

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image: $IMAGE ($(numfmt --to=iec-i --suffix=B "$size"), $size bytes uncompressed) in $((SECONDS - started)) s"
echo "image: largest files:"
(cd "$WORK/rootfs" && find . -type f -printf '%s %p\n' | sort -rn | awk 'NR <= 8' |
  while read -r n p; do printf '  %8s  %s\n' "$(numfmt --to=iec-i --suffix=B "$n")" "${p#.}"; done)
