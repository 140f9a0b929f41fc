#!/bin/sh
# deepbox entrypoint: prepare sshd's runtime state, check the configuration, then become sshd.
set -eu

KEY_DIR=/etc/ssh/deepbox
RUN_DIR=/run/deepbox

install -d -m 0755 /run/sshd "$RUN_DIR" "$RUN_DIR/authorized_keys" "$RUN_DIR/sshd_config.d"

# The host key is made on the first start and kept on a volume, so it survives restarts and rebuilds.
if [ ! -s "$KEY_DIR/ssh_host_ed25519_key" ]; then
    install -d -m 0755 "$KEY_DIR"
    ssh-keygen -q -t ed25519 -N '' -C "deepbox-host" -f "$KEY_DIR/ssh_host_ed25519_key"
fi

# Public keys arrive through the container's settings at run time, never through an image layer.
printf '%s\n' "${DEEPBOX_AUTHORIZED_KEYS:?no authorized key given}" >"$RUN_DIR/authorized_keys/$DEEPBOX_USER"
chmod 0644 "$RUN_DIR/authorized_keys/$DEEPBOX_USER"

# sshd does not pass the container's environment on to login sessions: hand it over explicitly.
{
    printf 'SetEnv'
    for name in PATH VIRTUAL_ENV LANG PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE ${DEEPBOX_SESSION_ENV:-}; do
        eval "value=\${$name-}"
        if [ -n "$value" ]; then printf ' %s="%s"' "$name" "$value"; fi
    done
    printf '\n'
} >"$RUN_DIR/sshd_config.d/10-env.conf"

# OpenSSH 9.8+ penalises sources that fail often; behind Docker's port proxy every client is one source.
if /usr/sbin/sshd -t -o PerSourcePenalties=no >/dev/null 2>&1; then
    echo "PerSourcePenalties no" >"$RUN_DIR/sshd_config.d/20-penalties.conf"
fi

# JupyterLab, when the box runs it: the token goes to a file only the box user can read (never
# onto a command line), and a supervisor restarts the server if it dies.
if [ -n "${DEEPBOX_JUPYTER_TOKEN:-}" ]; then
    install -d -m 0700 -o "$DEEPBOX_USER" "$RUN_DIR/jupyter"
    (umask 077 && printf '%s' "$DEEPBOX_JUPYTER_TOKEN" >"$RUN_DIR/jupyter/token")
    chown "$DEEPBOX_USER" "$RUN_DIR/jupyter/token"
    unset DEEPBOX_JUPYTER_TOKEN
    /usr/local/bin/deepbox-jupyter &
fi

/usr/sbin/sshd -t
exec /usr/sbin/sshd -D -e
