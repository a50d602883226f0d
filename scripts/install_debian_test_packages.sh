#!/usr/bin/env bash
# Install the Debian packages the tests use: Chromium for the browser tests (Playwright never
# downloads its own) and opencv-doc, whose sample vtest.avi is real footage for the anomaly tests.
set -euo pipefail
missing=()
if ! command -v chromium >/dev/null 2>&1 && [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  missing+=(chromium)
fi
if [ ! -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ]; then
  missing+=(opencv-doc)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing ${missing[*]} and apt-get is not available: install Chromium and set CHROMIUM_PATH." >&2
  echo "Without opencv-doc the vtest.avi test is skipped." >&2
  [[ " ${missing[*]} " == *" chromium "* ]] && exit 1
  exit 0
fi
sudo_cmd=""
if [ "$(id -u)" != "0" ]; then sudo_cmd="sudo"; fi
$sudo_cmd apt-get update -q
$sudo_cmd apt-get install -y -q "${missing[@]}"
