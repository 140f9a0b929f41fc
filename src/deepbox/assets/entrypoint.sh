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

# JupyterLab, when the box runs it, kept running by a supervisor. Its token is not in the container's
# settings: `deepbox up` writes it to the tmpfs, and the supervisor waits for it.
if [ -n "${DEEPBOX_JUPYTER:-}" ]; then
    /usr/local/bin/deepbox-jupyter &
fi

/usr/sbin/sshd -t -f "$RUN_DIR/sshd_config"
exec /usr/sbin/sshd -D -e -f "$RUN_DIR/sshd_config"
