#!/bin/sh
# Write sshd's configuration for the OpenSSH this image has into DIR (a tmpfs, never an image layer):
# DIR/sshd_config, DIR/authorized_keys/USER and DIR/notes.
#
# The hardened part is static (/etc/ssh/sshd_config). What depends on the version is asked of the
# image's own OpenSSH: the key exchanges, ciphers and MACs it knows (`ssh -Q`, the same build as
# sshd), whether sshd has strict key exchange (the Terrapin fix), and whether it accepts SetEnv,
# PermitUserEnvironment with names (7.8+) and PerSourcePenalties (9.8+). Where an old version forces
# a weaker choice, one line goes to DIR/notes (and the box log) for `deepbox up` to show.
set -eu
out=$1
ssh=${DEEPBOX_SSH:-ssh}
sshd=${DEEPBOX_SSHD:-/usr/sbin/sshd}
static=${DEEPBOX_SSHD_STATIC:-/etc/ssh/sshd_config}
hostkey=${DEEPBOX_HOSTKEY:-/etc/ssh/deepbox/ssh_host_ed25519_key}
user=${DEEPBOX_USER:?no box user given}
keys=${DEEPBOX_AUTHORIZED_KEYS:?no authorized key given}

# Whether this sshd accepts one configuration line (sshd checks it against its own keyword table).
accepts() { "$sshd" -t -f /dev/null -o "HostKey=$hostkey" -o "$1" >/dev/null 2>&1; }

# Those of the given algorithms that this OpenSSH knows, in the given order, comma-separated.
choose() {
    known=$("$ssh" -Q "$1" 2>/dev/null || true)
    shift
    chosen=""
    # A shell pattern, not grep: one process fewer per algorithm keeps the box's start quick.
    for algorithm in "$@"; do
        case "
$known
" in
            *"
$algorithm
"*) chosen="${chosen:+$chosen,}$algorithm" ;;
        esac
    done
    printf '%s' "$chosen"
}

note() {
    printf '%s\n' "$1" >>"$out/notes.tmp"
    echo "deepbox: $1" >&2
}

install -d -m 0755 "$out/authorized_keys"
: >"$out/notes.tmp"

# What this OpenSSH can do is asked of it once: the answers stay in the container's own layer, in a
# folder only root can write, keyed by the binaries' size, mtime and inode (an upgrade inside the box
# asks again), so a restart skips a dozen processes before sshd can listen.
cache=${DEEPBOX_SSHD_CACHE:-/var/lib/deepbox/sshd-choices}
stats=$(stat -c '%s %Y %i' "$sshd" "$(command -v "$ssh" || echo "$ssh")" 2>/dev/null | tr '\n' ' ' || true)
set -- $stats  # one space between fields, none at the end: as `read` gives the line back
identity="sshd-choices v1 $*"
cached=""
if [ -n "$stats" ] && [ -f "$cache" ]; then
    { read -r cached && read -r version && read -r kex && read -r ciphers && read -r macs &&
        read -r setenv_ok && read -r names_ok && read -r penalties_ok; } <"$cache" || cached=""
fi
if [ "$cached" != "$identity" ]; then
    version=$("$ssh" -V 2>&1 | sed -n 's/^OpenSSH_\([0-9][0-9.]*\).*/\1/p' | head -n 1)
    version=${version:-unknown}
    # Post-quantum hybrids first (ML-KEM from 9.9, sntrup761 from 8.5); curve25519 stays for clients
    # without them (JetBrains', paramiko, older OpenSSH).
    kex=$(choose kex mlkem768x25519-sha256 sntrup761x25519-sha512 sntrup761x25519-sha512@openssh.com \
        curve25519-sha256 curve25519-sha256@libssh.org)
    # chacha20-poly1305 is open to the Terrapin attack unless sshd has strict key exchange (OpenSSH 9.6,
    # backported into older ones by Debian and Ubuntu, so the binary is asked): without it, only AES
    # (GCM, or CTR with encrypt-then-MAC) is offered.
    chacha=""
    number=$(echo "$version" | awk -F. '{ print $1 * 100 + $2 }')
    if [ "$number" -ge 906 ] || grep -q 'kex-strict-s-v00@openssh.com' "$(command -v "$sshd")" 2>/dev/null; then
        chacha=chacha20-poly1305@openssh.com
    fi
    ciphers=$(choose cipher $chacha aes256-gcm@openssh.com aes128-gcm@openssh.com aes256-ctr aes192-ctr aes128-ctr)
    macs=$(choose mac hmac-sha2-512-etm@openssh.com hmac-sha2-256-etm@openssh.com umac-128-etm@openssh.com)
    setenv_ok=0 names_ok=- penalties_ok=0
    if accepts "SetEnv=DEEPBOX_PROBE=1"; then setenv_ok=1; fi
    if [ "$setenv_ok" = 0 ]; then
        names_ok=0
        if accepts "PermitUserEnvironment=PATH,LANG"; then names_ok=1; fi
    fi
    if accepts "PerSourcePenalties=no"; then penalties_ok=1; fi
    if [ -n "$stats" ] && [ -n "$kex" ] && [ -n "$ciphers" ] && [ -n "$macs" ]; then
        { install -d -m 0700 "${cache%/*}" &&
            printf '%s\n' "$identity" "$version" "$kex" "$ciphers" "$macs" "$setenv_ok" "$names_ok" "$penalties_ok" \
                >"$cache.tmp" && mv -f "$cache.tmp" "$cache"; } 2>/dev/null || true  # a read-only layer asks each time
    fi
fi
if [ -z "$kex" ] || [ -z "$ciphers" ] || [ -z "$macs" ]; then
    echo "deepbox: OpenSSH $version in the box lacks curve25519 key exchange or modern ciphers/MACs (OpenSSH 6.5+" \
        "has them); use a newer base image." >&2
    exit 1
fi
case $kex in
    mlkem* | sntrup*) ;;
    *) note "OpenSSH $version in the box has no post-quantum key exchange (it came in 8.5); it uses curve25519." ;;
esac

# sshd does not pass the container's environment on to login sessions: hand it over explicitly.
names=""
for name in PATH VIRTUAL_ENV LANG PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE ${DEEPBOX_SESSION_ENV:-}; do
    eval "isset=\${$name+x}"
    if [ -n "$isset" ]; then names="$names $name"; fi
done
setenv="" options="" permit=""
if [ "$setenv_ok" = 1 ]; then
    for name in $names; do
        eval "value=\${$name}"
        setenv="$setenv $name=\"$value\""
    done
else
    # An sshd without SetEnv (Ubuntu 18.04's 7.6; 8.2 and later have it): the same values go in as
    # authorized_keys environment= options, which sshd applies only with PermitUserEnvironment,
    # limited to these names where it can be.
    list=""
    for name in $names; do
        eval "value=\${$name}"
        options="${options:+$options,}environment=\"$name=$value\""
        list="${list:+$list,}$name"
    done
    if [ "$names_ok" = 1 ]; then
        permit=$list
        note "OpenSSH $version in the box has no SetEnv; the session environment comes from authorized_keys options."
    else
        permit=yes
        note "OpenSSH $version in the box has no SetEnv nor PermitUserEnvironment with names (7.8); the session environment comes from authorized_keys options, so ~/.ssh/environment is read too."
    fi
fi

{
    echo "# Written by deepbox at start for OpenSSH $version; the static part below is /etc/ssh/sshd_config."
    echo "KexAlgorithms $kex"
    echo "Ciphers $ciphers"
    echo "MACs $macs"
    if [ -n "$setenv" ]; then echo "SetEnv$setenv"; fi
    if [ -n "$permit" ]; then echo "PermitUserEnvironment $permit"; fi
    # 9.8+ penalises sources that fail often; behind Docker's port proxy every client is one source.
    if [ "$penalties_ok" = 1 ]; then echo "PerSourcePenalties no"; fi
    echo
    cat "$static"
} >"$out/sshd_config.tmp"
mv "$out/sshd_config.tmp" "$out/sshd_config"

# Public keys arrive through the container's settings at run time, never through an image layer.
printf '%s\n' "$keys" | while IFS= read -r key; do
    if [ -n "$key" ]; then printf '%s%s\n' "${options:+$options }" "$key"; fi
done >"$out/authorized_keys/$user"
chmod 0644 "$out/authorized_keys/$user"
# Written whole, before sshd starts: `deepbox up` reads them with its first SSH login.
mv "$out/notes.tmp" "$out/notes"
