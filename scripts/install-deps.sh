#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install what coffer needs to build, run and test on Debian 12 (apt-get; run as root or with sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang
  libipsec-mb-dev liburing-dev libssl-dev openssl libjansson-dev zlib1g-dev
  libp11-kit-dev p11-kit softhsm2 opensc
  libcmocka-dev python3 python3-cryptography python3-yaml time
  golang-go libcurl4-openssl-dev libyaml-dev libmicrohttpd-dev libsystemd-dev
  age opencryptoki prometheus systemd scdoc
)
# kubectl: Debian's kubernetes-client, unless a kubectl is already installed (some images ship
# another package that owns /usr/bin/kubectl, and the two cannot be installed together).
if ! command -v kubectl >/dev/null 2>&1; then
  PACKAGES+=(kubernetes-client)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
