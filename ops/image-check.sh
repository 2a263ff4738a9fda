#!/usr/bin/env bash
# Build the service image and run it for real, on a machine with no container
# engine and no container registry: `make image-check`, or CI through .ci/run.
#
#  1. installs podman, runc and debootstrap with apt when they are missing;
#  2. points podman at runc, cgroupfs and explicit default ulimits (the only
#     setting under which containers start on a bare VM without systemd);
#  3. builds the Dockerfile's base image with debootstrap from the mirror the
#     host's apt uses, and tags it with the FROM name, unless local storage
#     already holds an image by that name;
#  4. builds the service image with `podman build --pull=never --format docker`
#     (the docker format keeps HEALTHCHECK), pip reaching the host's package
#     index with the host's CA bundle;
#  5. starts an embedded PostgreSQL from the repo's .venv in a temporary
#     DEALS_DATA_DIR and bind-mounts its unix socket directory into the containers;
#  6. runs `deals migrate apply` from the image (with no network at all), then
#     the image's default command on a non-default API_PORT with host networking,
#     bound to 127.0.0.1;
#  7. checks that GET /health/live and GET /deals answer 200 from the host and
#     that the image's own HEALTHCHECK passes on that port;
#  8. removes its containers, stops the database and deletes its files at exit.
#
# Needs root (apt, debootstrap, rootful podman). Talks only to 127.0.0.1 and
# unix sockets, besides apt and pip reaching their package registries.
# Settings: IMAGE_CHECK_PORT (8765), IMAGE_CHECK_TAG (localhost/deals-service:check),
# IMAGE_CHECK_MIRROR (the Debian mirror for debootstrap; default: the host's apt's),
# IMAGE_CHECK_SUITE (stable).
set -euo pipefail

cd "$(dirname "$0")/.."
root="$(pwd)"

port="${IMAGE_CHECK_PORT:-8765}"
tag="${IMAGE_CHECK_TAG:-localhost/deals-service:check}"
suite="${IMAGE_CHECK_SUITE:-stable}"
prefix="deals-image-check"
migrate_ctr="$prefix-migrate"
api_ctr="$prefix-api"
sock_in_ctr="/run/deals-pg"
venv="$root/.venv"
started=$SECONDS

step() { printf '==> [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() {
    printf 'image check FAILED: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root (apt, debootstrap and rootful podman need it)"
[ "$port" != 8000 ] || fail "IMAGE_CHECK_PORT must not be the image's default 8000"

# One run at a time: the containers have fixed names.
exec 9>"${TMPDIR:-/tmp}/$prefix.lock"
flock -n 9 || fail "another image check is running (lock ${TMPDIR:-/tmp}/$prefix.lock)"

work="$(mktemp -d "${TMPDIR:-/tmp}/$prefix.XXXXXX")"
data_dir="$work/data"

podman_rm() {
    command -v podman >/dev/null || return 0
    podman rm --force --ignore --time 5 "$@" >/dev/null 2>&1 || true
}

stop_db() {
    local dir="$1"
    if [ -f "$dir/pg/PG_VERSION" ] && [ -x "$venv/bin/deals" ]; then
        env -u DATABASE_URL DEALS_DATA_DIR="$dir" "$venv/bin/deals" db stop >/dev/null 2>&1 || true
    fi
}

cleanup() {
    local status=$?
    set +e
    if [ "$status" -ne 0 ] && command -v podman >/dev/null; then
        for ctr in "$migrate_ctr" "$api_ctr"; do
            if podman container exists "$ctr" 2>/dev/null; then
                echo "--- last log lines of $ctr:" >&2
                podman logs --tail 40 "$ctr" >&2 2>&1
            fi
        done
    fi
    step "cleaning up: containers, database, $work"
    podman_rm "$migrate_ctr" "$api_ctr"
    stop_db "$data_dir"
    rm -rf "$work"
    if [ "$status" -eq 0 ]; then
        echo "image check passed ($((SECONDS - started)) s)"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. tools ------------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing with apt: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # runc is named explicitly so that it, not crun, satisfies podman's "crun | runc".
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        podman runc debootstrap debian-archive-keyring >"$work/apt.log" 2>&1 \
        || { cat "$work/apt.log" >&2; fail "apt-get install failed"; }
else
    step "podman, runc and debootstrap are installed"
fi
step "$(podman --version), $(runc --version | head -n 1)"

if [ ! -x "$venv/bin/deals" ]; then
    step "creating .venv (make install) for the embedded PostgreSQL"
    make --no-print-directory install
fi

# --- 2. podman configuration -----------------------------------------------------
# A private containers.conf, rewritten on every run, so that nothing on the
# machine changes and a second run sees the same settings.
export CONTAINERS_CONF="$work/containers.conf"
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
runtime="$(podman info --format '{{.Host.OCIRuntime.Name}}')"
[ "$runtime" = runc ] || fail "podman uses $runtime, not runc: is CONTAINERS_CONF honoured?"
step "podman configured: runtime runc, cgroupfs, default ulimits nofile 20000 / nproc 32768"

# Leftovers of an interrupted run: its containers and its embedded PostgreSQL.
podman_rm "$migrate_ctr" "$api_ctr"
for old in "${TMPDIR:-/tmp}/$prefix".*/data; do
    if [ "$old" = "$data_dir" ] || [ ! -d "$old" ]; then continue; fi
    step "removing the leftovers of an earlier run in ${old%/data}"
    stop_db "$old"
    rm -rf "${old%/data}"
done

# --- 3. base image ---------------------------------------------------------------
debian_mirror() {
    # The first deb source of the host's apt that is not a security archive.
    local file
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        awk '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; enabled = "yes"; suites = ""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^Types:/)   { types = $i }
                    if ($i ~ /^URIs:/)    { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
                    if ($i ~ /^Suites:/)  { suites = $i }
                    if ($i ~ /^Enabled:[ \t]*no/) { enabled = "no" }
                }
                if (enabled == "yes" && types ~ /[ \t]deb([ \t]|$)/ && suites !~ /-security/ && uris != "") {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$file"
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        awk '$1 == "deb" {
                 i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                 if ($(i + 1) !~ /-security/) { print $i; exit }
             }' "$file"
    done
}

build_base_image() {
    local image="$1" mirror rootfs
    mirror="${IMAGE_CHECK_MIRROR:-$(debian_mirror | grep -m 1 -E '^(https?|file)://' || true)}"
    [ -n "$mirror" ] || fail "no Debian mirror found in the host's apt sources (set IMAGE_CHECK_MIRROR)"
    # debootstrap fetches with wget: give it apt's proxy, if apt has one.
    local APT_PROXY=""
    eval "$(apt-config shell APT_PROXY Acquire::http::Proxy)"
    if [ -n "$APT_PROXY" ] && [ -z "${http_proxy:-}" ]; then
        export http_proxy="$APT_PROXY"
    fi
    rootfs="$work/rootfs"
    step "debootstrap $suite from $mirror (python3, python3-venv, python-is-python3)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python-is-python3,passwd,ca-certificates \
        "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 40 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    local python_version
    python_version="$(chroot "$rootfs" python --version)"
    step "importing the root file system as $image ($python_version, Debian $suite)"
    tar --numeric-owner -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "debootstrap $suite with python3 for $root/ops/image-check.sh" \
        - "$image" >"$work/import.log" 2>&1 \
        || { cat "$work/import.log" >&2; fail "podman import failed"; }
    rm -rf "$rootfs"
}

stages="$(awk 'toupper($1) == "FROM" && toupper($3) == "AS" { print $4 }' Dockerfile)"
bases="$(awk 'toupper($1) == "FROM" { print $2 }' Dockerfile | sort -u)"
for base in $bases; do
    if grep -qx -F "$base" <<<"$stages"; then
        continue
    fi
    if podman image exists "$base"; then
        step "base image $base is in local storage"
    else
        build_base_image "$base"
    fi
done

# --- 4. service image -------------------------------------------------------------
# pip in the build reaches the index the host's pip uses, with the host's CA
# bundle: a pip.conf made from the host's settings, mounted read-only.
pip_conf="$work/pip.conf"
host_pip() { python3 -m pip config get "$1" 2>/dev/null || true; }
index_url="${PIP_INDEX_URL:-$(host_pip global.index-url)}"
extra_urls="${PIP_EXTRA_INDEX_URL:-$(host_pip global.extra-index-url)}"
trusted="${PIP_TRUSTED_HOST:-$(host_pip global.trusted-host)}"
{
    echo "[global]"
    echo "timeout = ${PIP_DEFAULT_TIMEOUT:-120}"
    case "$index_url" in http://* | https://*) echo "index-url = $index_url" ;; esac
    extra=""
    for url in $extra_urls; do
        case "$url" in http://* | https://*) extra="$extra $url" ;; esac
    done
    [ -z "$extra" ] || echo "extra-index-url =$extra"
    [ -z "$trusted" ] || echo "trusted-host = $trusted"
    [ ! -f /etc/ssl/certs/ca-certificates.crt ] || echo "cert = /etc/ssl/certs/ca-certificates.crt"
} >"$pip_conf"
build_mounts=(-v "$pip_conf:/etc/pip.conf:ro")
[ ! -d /etc/ssl/certs ] || build_mounts+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)

step "podman build --pull=never --format docker -t $tag"
podman build --pull=never --format docker --network host "${build_mounts[@]}" \
    -t "$tag" -f Dockerfile . >"$work/build.log" 2>&1 \
    || { tail -n 60 "$work/build.log" >&2; fail "podman build failed"; }
healthcheck="$(podman image inspect --format '{{json .HealthCheck}}' "$tag")"
case "$healthcheck" in *API_PORT*) ;; *) fail "the image has no HEALTHCHECK reading API_PORT: $healthcheck" ;; esac
user="$(podman image inspect --format '{{.Config.User}}' "$tag")"
case "$user" in "" | root | 0 | 0:*) fail "the image runs as root (User=$user)" ;; esac
step "built $tag (user $user, HEALTHCHECK kept)"
podman run --rm --network none --no-healthcheck "$tag" python -c '
import os, service, service.migrations, service.sql
assert "PYTHONPATH" not in os.environ, os.environ["PYTHONPATH"]
assert service.__file__.startswith("/venv/lib/"), service.__file__
print("    service is imported from the installed wheel:", os.path.dirname(service.__file__))
' || fail "the image does not run the service from its installed wheel"

# --- 5. test database ---------------------------------------------------------------
step "starting an embedded PostgreSQL in $data_dir"
host_url="$(env -u DATABASE_URL DEALS_DATA_DIR="$data_dir" "$venv/bin/deals" db start 2>"$work/db.log")" \
    || { cat "$work/db.log" >&2; fail "the embedded PostgreSQL did not start"; }
socket_dir="$(sed -n 's/.*[?&]host=\([^&]*\).*/\1/p' <<<"$host_url")"
[ -S "$socket_dir/.s.PGSQL.5432" ] || fail "no PostgreSQL socket in '$socket_dir' (url $host_url)"
ctr_url="${host_url/host=$socket_dir/host=$sock_in_ctr}"
db_args=(-v "$socket_dir:$sock_in_ctr" -e "DATABASE_URL=$ctr_url")

# --- 6. migrate and serve from the image --------------------------------------------
step "deals migrate apply (in a container with no network)"
podman run --name "$migrate_ctr" --network none --no-healthcheck "${db_args[@]}" \
    "$tag" deals migrate apply \
    || fail "deals migrate apply failed in the image"
podman_rm "$migrate_ctr"

"$venv/bin/python" - "$port" <<'PY' || fail "port $port on 127.0.0.1 is already in use"
import socket, sys

with socket.socket() as s:  # SO_REUSEADDR: TIME_WAIT is fine, a listener is not
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen()
PY

step "serving from the image on 127.0.0.1:$port (host network, API_PORT=$port)"
# No systemd here to run the health check on a timer: `podman healthcheck run` does it.
podman run -d --name "$api_ctr" --network host --health-interval disable "${db_args[@]}" \
    -e API_HOST=127.0.0.1 -e "API_PORT=$port" "$tag" >/dev/null 2>"$work/run.log" \
    || { cat "$work/run.log" >&2; fail "the image's default command did not start"; }
grep -v 'unable to get systemd connection' "$work/run.log" >&2 || true

# --- 7. checks from the host -----------------------------------------------------------
"$venv/bin/python" - "$port" "$api_ctr" <<'PY' || fail "the served image did not answer"
import subprocess, sys, time, urllib.error, urllib.request

port, ctr = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"


def get(path: str) -> int:
    with urllib.request.urlopen(base + path, timeout=5) as response:
        response.read()
        return response.status


deadline = time.monotonic() + 90
while True:
    try:
        if get("/health/live") == 200:
            break
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    state = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Status}}", ctr],
        capture_output=True, text=True,
    ).stdout.strip()
    if state not in {"running", "created", "configured", "initialized"}:
        sys.exit(f"container {ctr} is {state or 'gone'}")
    if time.monotonic() > deadline:
        sys.exit("/health/live did not answer 200 within 90 s")
    time.sleep(0.5)
print("    GET /health/live 200")
status = get("/deals")
assert status == 200, status
print("    GET /deals 200")
PY

step "podman healthcheck run $api_ctr (the image's HEALTHCHECK, API_PORT=$port)"
podman healthcheck run "$api_ctr" \
    || fail "the image's HEALTHCHECK failed on API_PORT=$port"
echo "    healthy"
