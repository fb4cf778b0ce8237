#!/usr/bin/env bash
# Sets up a fresh Debian machine for storeflow: Debian packages, the
# virtualenv with storeflow installed, and the local services the tests use.
# Safe to run again: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
want_services=${1:-services}

log() { printf '[bootstrap] %s\n' "$*" >&2; }

install_debian_packages() {
  local missing=()
  while read -r pkg; do
    pkg=${pkg%%#*}; pkg=${pkg// /}
    [ -n "$pkg" ] || continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done < scripts/debian-packages.txt
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting system daemons (smbd, nfsd, ...): the
    # tests run private ones, and start_services starts PostgreSQL and RabbitMQ.
    local policy=/usr/sbin/policy-rc.d added_policy=""
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
    fi
    local rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
      || rc=$?
    [ -z "$added_policy" ] || rm -f "$policy"
    [ "$rc" -eq 0 ] || { log "apt-get failed ($rc) installing: ${missing[*]}"; exit "$rc"; }
  fi
}

install_python_packages() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.storeflow-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing storeflow and its dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    touch "$stamp"
  fi
  link_storeflow
}

# Editable, with one import name: `storeflow` is ./storeflow (links to the top-level
# folders), and `flows`, `tasks`, ... are never importable as top-level names.  pip's
# editable install does that with setuptools' finder, an import hook that every Python
# process of the virtualenv imports at start-up (pathlib and more: 5-6 ms of each
# `storeflow` command at load 1, about 20 ms at load 3); its .pth is replaced by a
# plain path: a folder in the virtualenv that holds only a link `storeflow` ->
# ./storeflow.  New files are seen at once, as with the finder; `pip install -e .`
# again writes the finder back, and the next bootstrap replaces it again.
link_storeflow() {
  local site venv shim pth
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  venv=$(cd "$VENV" && pwd)
  shim="$venv/storeflow-path"
  mkdir -p "$shim"
  ln -sfn "$PWD/storeflow" "$shim/storeflow"
  for pth in "$site"/__editable__.storeflow-*.pth; do
    [ -f "$pth" ] || { log "no editable storeflow in $site"; return 1; }
    [ "$(cat "$pth")" = "$shim" ] || printf '%s\n' "$shim" > "$pth"
  done
  "$VENV/bin/python" -c 'import storeflow.cli.main' \
    || { log "storeflow does not import through $shim"; return 1; }
  compile_storeflow
}

# Bytecode for storeflow's sources, as pip writes it for a regular install: where
# PYTHONDONTWRITEBYTECODE is set (CI, containers), an editable install never gets any,
# and every process compiles what it imports (the `storeflow` client alone: 5 ms a
# command).  Only files whose bytecode is missing or stale are compiled; a file edited
# later is compiled in memory, as before, until the next bootstrap.
compile_storeflow() {
  "$VENV/bin/python" -m compileall -q -j 0 blocks cli flows models sandbox services tasks storeflow \
    >/dev/null || log "some of storeflow's sources did not compile (see ruff check)"
}

wait_for_port() {  # host port seconds
  local deadline=$((SECONDS + $3))
  while ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { log "timed out waiting for $1:$2"; return 1; }
    sleep 1
  done
}

start_services() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
    wait_for_port 127.0.0.1 5432 60
  fi
  if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
    wait_for_port 127.0.0.1 5672 120
  fi
}

install_debian_packages
install_python_packages
if [ "$want_services" = services ]; then
  start_services
fi
