#!/usr/bin/env bash
# Make the offline default dataset (Fashion-MNIST, Debian package dataset-fashion-mnist) available.
# Does nothing when the files are already there or SECATEURS_DATA points at them; otherwise installs the
# Debian package when apt-get is usable (root or password-less sudo). Never fails the build: the dataset
# loader itself prints the options (--data-dir, SECATEURS_DATA, apt, download) if the data is still missing.
set -u
DEB_DIR=/usr/share/datasets/fashion-mnist
if [ -f "$DEB_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "fashion-mnist: found in $DEB_DIR"; exit 0
fi
if [ -n "${SECATEURS_DATA:-}" ] && ls "${SECATEURS_DATA}"/*/train-images-idx3-ubyte* "${SECATEURS_DATA}"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  echo "fashion-mnist: using SECATEURS_DATA=${SECATEURS_DATA}"; exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
fi
if command -v apt-get >/dev/null 2>&1 && [ "$SUDO" != none ]; then
  echo "fashion-mnist: installing Debian package dataset-fashion-mnist"
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    && { echo "fashion-mnist: installed in $DEB_DIR"; exit 0; }
fi
echo "fashion-mnist: not installed here; the loader will try --data-dir, \$SECATEURS_DATA, then download" >&2
exit 0
