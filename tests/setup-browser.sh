#!/usr/bin/env bash
# Installs what the web console's browser test needs: Debian's headless-capable Chromium and its
# WebDriver (chromedriver). Idempotent: does nothing when both are already there.
#
#   tests/setup-browser.sh          # then: cargo test --workspace
#
# The test looks for /usr/bin/chromium and /usr/bin/chromedriver; without them it is skipped,
# unless TOCSIN_TEST_REQUIRE_BROWSER=1 (as in .ci/run), where it fails.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "setup-browser: chromium and chromedriver are installed ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))."
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "setup-browser: apt-get not found; install Chromium and chromedriver so that /usr/bin/chromium and /usr/bin/chromedriver exist." >&2
  exit 1
fi

# Root runs apt-get itself; anyone else goes through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "setup-browser: not root and no sudo; as root run: apt-get install --no-install-recommends chromium chromium-driver" >&2
    exit 1
  fi
}

echo "setup-browser: installing chromium and chromium-driver with apt-get."
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver

for bin in /usr/bin/chromium /usr/bin/chromedriver; do
  if [ ! -x "$bin" ]; then
    echo "setup-browser: $bin is still missing after the install." >&2
    exit 1
  fi
done
echo "setup-browser: ready ($(/usr/bin/chromium --version 2>/dev/null || echo 'chromium'), $(/usr/bin/chromedriver --version 2>/dev/null | head -n 1 || echo 'chromedriver'))."
