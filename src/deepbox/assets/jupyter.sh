#!/bin/sh
# Keep JupyterLab running as the box user, restarting it when it exits. Its log goes to the box log.
# The token and the secrets arrive on the /run/deepbox tmpfs with `deepbox up`, after the box starts
# (and again after the engine restarts it): wait for the token, then start with both.
set -u
user=$DEEPBOX_USER
home=$(getent passwd "$user" | cut -d: -f6)
token=/run/deepbox/jupyter-token
allow_root=""
if [ "$(id -u "$user")" = 0 ]; then allow_root="--allow-root"; fi  # the box user of a root host
if [ ! -s "$token" ]; then echo "deepbox: JupyterLab starts when \`deepbox up\` hands over its token" >&2; fi
while [ ! -s "$token" ]; do sleep 1; done
while true; do
    setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
        env HOME="$home" USER="$user" JUPYTER_TOKEN_FILE="$token" \
        sh -c '. /etc/profile.d/deepbox-secrets.sh; exec "$@"' deepbox-jupyter \
        /opt/venv/bin/jupyter lab --ip=0.0.0.0 --port=8888 --no-browser \
        --ServerApp.root_dir="${DEEPBOX_WORKSPACE:-/workspace}" $allow_root
    echo "deepbox: JupyterLab exited with status $?; restarting in 2 s" >&2
    sleep 2
done
