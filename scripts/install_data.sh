#!/bin/sh
# Installs Fashion-MNIST from the Debian/Ubuntu package dataset-fashion-mnist when it is
# missing and apt-get is usable (as root, or through password-less sudo). Elsewhere it
# says how else to get the data and succeeds: the data set may come from --data-dir,
# HML_VAE_DATA_DIR or tensorflow-datasets instead.
set -eu
DIR=/usr/share/datasets/fashion-mnist
if [ -f "$DIR/train-images-idx3-ubyte.gz" ]; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        SUDO=
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        SUDO=none
    fi
    if [ "$SUDO" != none ]; then
        echo "Installing Fashion-MNIST: apt-get install dataset-fashion-mnist"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
        exit 0
    fi
fi
cat >&2 <<'MSG'
Fashion-MNIST is not installed in /usr/share/datasets/fashion-mnist and apt-get cannot be
used here. Get the data one of these ways (see README, "Data"):
  - sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu)
  - pass --data-dir DIR or set HML_VAE_DATA_DIR=DIR for a directory with the four IDX files
  - pass --download to scripts/train.py (tensorflow-datasets, needs network access)
MSG
