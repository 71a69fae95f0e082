#!/usr/bin/env bash
# Install what building and testing the project needs on a fresh Debian machine
# (idempotent: installs only what is missing). The Rust toolchain itself is
# expected on PATH (rustup). espeak-ng and sox are only needed to regenerate
# the committed fixtures (scripts/make-fixtures.sh), so they are optional.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)      # webrtc-vad compiles libfvad's C sources
command -v kill >/dev/null 2>&1 || need+=(procps) # the shutdown tests send signals
command -v script >/dev/null 2>&1 || need+=(bsdutils) # the CLI's terminal test runs it under a pty
command -v redis-server >/dev/null 2>&1 || need+=(redis-server) # cluster tests start their own
# nginx: the load-balancer test (tests/integration/cluster.rs) runs its own on
# loopback; found in /usr/sbin, which is not on every user's PATH.
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
if [[ ${1:-} == --fixtures ]]; then
  command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
  command -v sox >/dev/null 2>&1 || need+=(sox)
fi
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: please install: ${need[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found: install Rust (rustup)" >&2; exit 1; }
