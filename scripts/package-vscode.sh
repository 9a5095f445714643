#!/usr/bin/env bash
# Packages editors/vscode as target/clarion.vsix (needs Node.js and npm; not run in CI).
# Install it with: code --install-extension target/clarion.vsix
set -euo pipefail
cd "$(dirname "$0")/../editors/vscode"
npm ci --omit=dev --no-audit --no-fund
mkdir -p ../../target
npx --yes @vscode/vsce package --skip-license --out ../../target/clarion.vsix
echo "wrote target/clarion.vsix"
