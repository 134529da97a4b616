#!/usr/bin/env bash
# The one test command (CI runs it through .ci/run): formatting, lints, every binary, the peer
# client libraries the black-box suite drives, then every test in the workspace.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# `cargo test` does not build other crates' binaries; the black-box suite starts these.
step "cargo build --workspace --bins"
cargo build --workspace --bins

step "bash tests/peers/install.sh"
bash tests/peers/install.sh

step "bash admin-ui/tests/browser/install.sh"
bash admin-ui/tests/browser/install.sh

step "cargo test --workspace"
cargo test --workspace
