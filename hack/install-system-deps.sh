#!/usr/bin/env bash
# Debian packages the tests run for real: Prometheus, Pushgateway (+promtool), wrk, hey.
set -euo pipefail
needed=()
command -v prometheus >/dev/null || needed+=(prometheus)
command -v prometheus-pushgateway >/dev/null || needed+=(prometheus-pushgateway)
command -v wrk >/dev/null || needed+=(wrk)
command -v hey >/dev/null || needed+=(hey)
[[ ${#needed[@]} -eq 0 ]] && exit 0
sudo=""
[[ "$(id -u)" != 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || true
$sudo apt-get install -y -qq --no-install-recommends "${needed[@]}"
