#!/bin/sh
# Keep JupyterLab running as the box user, restarting it when it exits. Its log goes to the box log.
set -u
user=$DEEPBOX_USER
home=$(getent passwd "$user" | cut -d: -f6)
allow_root=""
if [ "$(id -u "$user")" = 0 ]; then allow_root="--allow-root"; fi  # the box user of a root host
while true; do
    setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
        env HOME="$home" USER="$user" JUPYTER_TOKEN_FILE=/run/deepbox/jupyter/token \
        /opt/venv/bin/jupyter lab --ip=0.0.0.0 --port=8888 --no-browser \
        --ServerApp.root_dir="${DEEPBOX_WORKSPACE:-/workspace}" $allow_root
    echo "deepbox: JupyterLab exited with status $?; restarting in 2 s" >&2
    sleep 2
done
