#!/bin/sh
# deepbox entrypoint: prepare sshd's runtime state, write its configuration for the OpenSSH this
# image has, check it, then become sshd.
set -eu

KEY_DIR=/etc/ssh/deepbox
RUN_DIR=/run/deepbox

install -d -m 0755 /run/sshd "$RUN_DIR"

# The host key is made on the first start and kept on a volume, so it survives restarts and rebuilds.
if [ ! -s "$KEY_DIR/ssh_host_ed25519_key" ]; then
    install -d -m 0755 "$KEY_DIR"
    ssh-keygen -q -t ed25519 -N '' -C "deepbox-host" -f "$KEY_DIR/ssh_host_ed25519_key"
fi

# sshd_config, authorized_keys (from the container's settings) and notes on weaker choices, all on
# the /run tmpfs. `deepbox up` reads the notes with its first SSH login.
/usr/local/lib/deepbox/sshd-config.sh "$RUN_DIR"

# JupyterLab, when the box runs it: the token goes to a file only the box user can read (never
# onto a command line), and a supervisor restarts the server if it dies.
if [ -n "${DEEPBOX_JUPYTER_TOKEN:-}" ]; then
    install -d -m 0700 -o "$DEEPBOX_USER" "$RUN_DIR/jupyter"
    (umask 077 && printf '%s' "$DEEPBOX_JUPYTER_TOKEN" >"$RUN_DIR/jupyter/token")
    chown "$DEEPBOX_USER" "$RUN_DIR/jupyter/token"
    unset DEEPBOX_JUPYTER_TOKEN
    /usr/local/bin/deepbox-jupyter &
fi

/usr/sbin/sshd -t -f "$RUN_DIR/sshd_config"
exec /usr/sbin/sshd -D -e -f "$RUN_DIR/sshd_config"
