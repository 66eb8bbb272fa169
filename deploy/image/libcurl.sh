#!/usr/bin/env bash
# Builds the image's libcurl: Debian's own source of curl for SUITE (its security patches included),
# configured for HTTP and HTTPS only, and installs it under DEST/usr/lib/<triplet>.
#
#   deploy/image/libcurl.sh SUITE DEST
#
# Why: Debian's libcurl4 is built for every protocol and pulls in about 25 libraries (GnuTLS through
# librtmp, Kerberos, LDAP, SASL, libssh2, libidn2, brotli, zstd): 10 MiB of the image for code the agent
# never runs. This one needs OpenSSL, nghttp2 (`http2: true`) and zlib only. It is built with Debian's
# hardening flags, `--enable-versioned-symbols` (the binary, linked against libcurl4-openssl-dev, asks
# for CURL_OPENSSL_4) and Debian's CA paths, so it is a drop-in libcurl.so.4 for the same binary.
#
# Needs: dpkg-dev gcc make autoconf automake libtool libssl-dev libnghttp2-dev zlib1g-dev, and
# deb.debian.org (or DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR) for the source.
set -euo pipefail

# Runs a noisy build step quietly; on failure, prints what it said and which step it was.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" | tail -40 >&2
    echo "libcurl.sh: failed: $*" >&2
    return 1
  fi
}

suite=$1 dest=$2
mkdir -p "$dest"
dest=$(readlink -f "$dest")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A private apt configuration with deb-src lines: the machine's own sources are left alone.
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
opts=""; [ ! -e "$keyring" ] || opts="[signed-by=$keyring] "
cat > "$work/apt/sources.list" <<EOF
deb-src $opts$mirror $suite main
deb-src $opts$mirror $suite-updates main
deb-src $opts$security_mirror $suite-security main
EOF
apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" -qq update
(cd "$work" && apt-get "${apt_opts[@]}" -qq source --download-only curl)
dsc=$(ls "$work"/curl_*.dsc)
# apt checked these files against the suite's signed Release file; dpkg-source's own check of the
# uploader's signature would need debian-keyring, so its complaint is not shown.
quiet dpkg-source -q --skip-patches -x "$dsc" "$work/src"

cd "$work/src"
# Every Debian patch but the last two, which turn the tree into the GnuTLS and NSS flavours
# (debian/rules pops them for the OpenSSL build the same way).
grep -v -e '^#' -e '^[[:space:]]*$' debian/patches/series | grep -v -e '^90_gnutls' -e '^99_nss' |
  while read -r p _; do patch -s -p1 < "debian/patches/$p"; done
quiet autoreconf -fi

eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
quiet ./configure --quiet --prefix=/usr --libdir="/usr/lib/$triplet" \
  --disable-static --enable-shared --disable-dependency-tracking \
  --enable-versioned-symbols --disable-symbol-hiding --enable-threaded-resolver --enable-ipv6 \
  --with-openssl --with-nghttp2 --with-zlib \
  --with-ca-path=/etc/ssl/certs --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt \
  --enable-http --enable-proxy \
  --disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp --disable-dict \
  --disable-telnet --disable-tftp --disable-pop3 --disable-imap --disable-smb --disable-smtp \
  --disable-gopher --disable-mqtt --disable-manual \
  --without-libssh2 --without-libssh --without-librtmp --without-libidn2 --without-libpsl \
  --without-brotli --without-zstd --without-gssapi --without-libgsasl
quiet make -s -C lib -j"$(nproc)"
quiet make -s -C lib install-strip DESTDIR="$work/out"

mkdir -p "$dest/usr/lib/$triplet"
cp -a "$work/out/usr/lib/$triplet"/libcurl.so.4* "$dest/usr/lib/$triplet/"
echo "libcurl: $(basename "$dsc" .dsc) (HTTP, HTTPS; OpenSSL, nghttp2, zlib)"
