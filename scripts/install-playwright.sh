#!/usr/bin/env bash
# playwright-core (npm, no browser download) for the dashboard's browser test
# (integration-tests/tests/dashboard_browser.rs), which points it at Debian's `chromium`
# (installed by scripts/install-deps.sh). Cached under $AGENTOPS_CACHE/playwright-core-<version>;
# installed again only when the pinned version changes. Node.js (>= 18) comes from Debian's
# `nodejs` and `npm` packages when the machine has no `node`.
source "$(dirname "$0")/lib.sh"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing Debian packages: nodejs npm"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [ -f "$PLAYWRIGHT_DIR/node_modules/playwright-core/package.json" ]; then
  exit 0
fi
log "installing playwright-core@$PLAYWRIGHT_VERSION into $PLAYWRIGHT_DIR"
rm -rf "$PLAYWRIGHT_DIR.tmp"
mkdir -p "$PLAYWRIGHT_DIR.tmp"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$PLAYWRIGHT_DIR.tmp" --no-save --no-audit --no-fund \
  --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
rm -rf "$PLAYWRIGHT_DIR"
mv "$PLAYWRIGHT_DIR.tmp" "$PLAYWRIGHT_DIR"
