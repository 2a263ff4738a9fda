#!/usr/bin/env bash
# Check the Prometheus alert rules with promtool: `make rules-check`, and CI through .ci/run.
#
#  1. installs Debian's `prometheus` package (it carries promtool) with apt when
#     promtool is missing; that needs root. The package also ships a Prometheus
#     server: on a host run by systemd, a server this script installed is stopped
#     and disabled again, since only promtool is wanted;
#  2. `promtool check rules ops/prometheus/alerts.yml` (syntax, templates);
#  3. `promtool test rules ops/prometheus/alerts.test.yml`: synthetic series, and
#     when each alert must fire or stay quiet.
#
# `make lint` runs steps 2 and 3 whenever promtool is on the PATH.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
    [ "$(id -u)" -eq 0 ] || {
        echo "promtool is missing: apt-get install prometheus (as root), or run this as root" >&2
        exit 1
    }
    echo "==> installing promtool with apt (Debian package prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    started=$SECONDS
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus >"$log" 2>&1 \
        || { cat "$log" >&2; echo "apt-get install prometheus failed" >&2; exit 1; }
    echo "==> installed in $((SECONDS - started)) s"
    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
        systemctl disable --now --quiet prometheus || true
    fi
fi
promtool --version 2>&1 | head -n 1

promtool check rules ops/prometheus/alerts.yml
promtool test rules ops/prometheus/alerts.test.yml
