#!/usr/bin/env bash
# `make dist`: dist/anduin-<version>-linux-<arch>.tar.gz for plain nodes, laid out from / so that
#   tar -xzf anduin-<version>-linux-<arch>.tar.gz --strip-components=1 -C /
# installs usr/local/bin/anduin (release, static Swift runtime, stripped), etc/anduin/anduin.yaml.example
# and etc/systemd/system/anduin.service. The node needs Debian/Ubuntu's libcurl4, zlib1g,
# libdeflate0, liblz4-1, libpcre2-8-0 and libyaml-0-2, and tzdata (the same files the image carries).
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/helm/anduin/Chart.yaml)
ARCH=$(uname -m)
NAME=anduin-$VERSION-linux-$ARCH
STAGE=.build/dist/$NAME

swift build -c release --static-swift-stdlib --product anduin
bin="$(swift build -c release --static-swift-stdlib --show-bin-path)/anduin"
rm -rf "$STAGE"
install -D -m 0755 "$bin" "$STAGE/usr/local/bin/anduin"
strip "$STAGE/usr/local/bin/anduin"
install -D -m 0644 deploy/dist/anduin.yaml "$STAGE/etc/anduin/anduin.yaml.example"
install -D -m 0644 deploy/dist/anduin.service "$STAGE/etc/systemd/system/anduin.service"
install -D -m 0644 deploy/dist/INSTALL.txt "$STAGE/INSTALL.txt"
mkdir -p dist
tar -C .build/dist --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -czf "dist/$NAME.tar.gz" "$NAME"
echo "dist: dist/$NAME.tar.gz ($(du -h "dist/$NAME.tar.gz" | cut -f1))"
