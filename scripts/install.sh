#!/usr/bin/env bash
# Install deepbox on a Debian machine and bring up the example box (examples/digits).
# Installs Docker's engine, debootstrap and the OpenSSH client when missing, starts the engine
# when none answers, installs deepbox into .venv and builds the offline base image if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)  # deepbox sync, for boxes on a server
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "> Installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if docker info 2>&1 | grep -q "permission denied"; then
    echo "Docker's engine runs but $(id -un) may not use it: run this script with sudo, or add yourself to the" \
        "'docker' group (sudo usermod -aG docker $(id -un)) and log in again." >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        echo "> Starting the Docker engine (systemd)"
        $sudo systemctl start docker
    else
        # No init system (containers, CI): run dockerd in the background and remember its PID.
        echo "> Starting the Docker engine (dockerd, log in .deepbox-dockerd.log)"
        $sudo sh -c "nohup dockerd >'$root/.deepbox-dockerd.log' 2>&1 & echo \$! >'$root/.deepbox-dockerd.pid'"
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "The Docker engine did not start; see .deepbox-dockerd.log." >&2; exit 1; }
fi

echo "> Installing deepbox into .venv"
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# pip compiles the packages it installs, but not an editable source tree: every `deepbox` run would
# compile its own modules again where PYTHONDONTWRITEBYTECODE is set (~0.1 s a command).
.venv/bin/python -m compileall -q src/deepbox >/dev/null

base=deepbox/debian:bookworm
if ! docker image inspect "$base" >/dev/null 2>&1; then
    $sudo .venv/bin/deepbox base bootstrap --suite bookworm --tag "$base"
fi

echo "> Bringing up the example box"
(cd examples/digits && "$root/.venv/bin/deepbox" up)

cat <<MSG

deepbox is installed in $root/.venv (add $root/.venv/bin to PATH). Next:
  ssh deepbox-digits                                  # a shell in the box
  .venv/bin/deepbox -C examples/digits ssh -- python /workspace/train.py
  .venv/bin/deepbox status                            # all boxes
  .venv/bin/deepbox -C examples/digits down           # stop; nothing is lost
MSG
