#!/usr/bin/env bash
# Installs what memharness needs, idempotently: Debian packages (only the missing ones) and a
# Python virtualenv in .venv with memharness and its test tools (only when pyproject changed).
# Safe to run again and again; the second run does nothing and takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  qemu-system-x86 qemu-system-arm qemu-efi-aarch64 qemu-utils
  busybox-static ndctl daxctl kmod cpio xz-utils zstd lz4 device-tree-compiler
  gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils
  python3-venv ca-certificates apt
  make bc bison flex libelf-dev libssl-dev ccache git
  e2fsprogs fakeroot openssh-client  # the Debian guest image (mke2fs -d), `memharness shell`
  openssl  # the tests' own user image (--image PATH): a hashed root password
  chromium poppler-utils  # the HTML report is tested in a real browser (print to PDF, read it)
)

missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
stamp=.venv/.memharness-setup
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
