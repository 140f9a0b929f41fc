#!/bin/sh
# Create (or adopt) the box user with the host user's UID/GID, so files written to mounted
# folders keep their owner. Base images often have UID 1000 already (ubuntu:24.04's 'ubuntu').
set -eu
name=$1 uid=$2 gid=$3

# On a root host whose project is root's, the box user is root itself (still key-only).
if [ "$uid" = 0 ]; then
    usermod -s /bin/bash -p '*' root
    exit 0
fi

if ! getent group "$gid" >/dev/null; then
    if getent group "$name" >/dev/null; then groupmod -g "$gid" "$name"; else groupadd -g "$gid" "$name"; fi
fi
holder=$(getent passwd "$uid" | cut -d: -f1 || true)
if [ -n "$holder" ] && [ "$holder" != "$name" ]; then
    usermod -l "$name" -d "/home/$name" -m -g "$gid" -s /bin/bash "$holder"
elif [ -n "$holder" ]; then
    usermod -g "$gid" -s /bin/bash "$name"
elif getent passwd "$name" >/dev/null; then
    usermod -u "$uid" -g "$gid" -s /bin/bash "$name"
else
    useradd -m -u "$uid" -g "$gid" -s /bin/bash "$name"
fi
install -d -m 0755 -o "$uid" -g "$gid" "/home/$name"
# '*' rather than the default '!': no password, but not a locked account (sshd refuses locked ones).
usermod -p '*' "$name"
