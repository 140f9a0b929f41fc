#!/bin/bash
# deepbox: the Slurm job that holds one box. It runs the user's rootless Podman for the box on this
# node, says where that engine listens (the ready file, on the shared home), and removes the box when
# the job ends: scancel and the time limit send TERM first. A box never outlives its job; the
# cluster's Epilog (deepbox's slurm-epilog.sh) covers a job killed without TERM.
set -u
box=@BOX@
state="@STATE@"
job="$SLURM_JOB_ID"
label="deepbox.slurm.job=$job"

# Jobs run without a login session: a runtime folder of the user's own on this node, the same for
# every job, since Podman keeps it in its database.
if [ ! -d "/run/user/$(id -u)" ] || [ ! -w "/run/user/$(id -u)" ]; then
    export XDG_RUNTIME_DIR="/tmp/deepbox-run-$(id -u)"
    mkdir -p -m 700 "$XDG_RUNTIME_DIR"
else
    export XDG_RUNTIME_DIR="/run/user/$(id -u)"
fi
cd "$HOME" || cd /

remove() {  # every container and volume with label $1
    ids=$(podman ps -aq --filter "label=$1")
    [ -z "$ids" ] || podman rm -f -v -t 3 $ids >/dev/null
    volumes=$(podman volume ls -q --filter "label=$1")
    [ -z "$volumes" ] || podman volume rm -f $volumes >/dev/null
    # Podman keeps each exec session's conmon for 5 minutes after it ends (for its API to read the
    # exit code), even once the container is gone: end those whose container no longer exists.
    for pid in $(pgrep -u "$(id -u)" -x conmon); do
        container=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n '/^-c$/{n;p;q}')
        [ -z "$container" ] || podman container exists "$container" || kill "$pid" 2>/dev/null
    done
}

# A box of this name left on this node by a job that could not clean up (killed, node rebooted).
remove "deepbox.box=$box"

socket="$XDG_RUNTIME_DIR/deepbox-$job.sock"
ready="$state/$job.ready"
mkdir -p "$state"
service=""
finish() {
    trap '' TERM INT
    echo "deepbox: removing box $box"
    remove "$label"
    [ -z "$service" ] || kill "$service" 2>/dev/null
    rm -f "$socket" "$ready"
    exit 0
}
trap finish TERM INT

podman system service --time=0 "unix://$socket" &
service=$!
for _ in $(seq 300); do
    [ -S "$socket" ] && break
    kill -0 "$service" 2>/dev/null || break
    sleep 0.1
done
if [ ! -S "$socket" ]; then
    echo "deepbox: Podman's service did not start on $(hostname); \`podman info\` on that node tells why." >&2
    finish
fi

{
    echo "node=${SLURMD_NODENAME:-$(hostname -s)}"
    echo "socket=$socket"
    echo "gpus=${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}"  # the node's own GPU indexes
    for key in /etc/ssh/ssh_host_*_key.pub; do
        [ -r "$key" ] && echo "hostkey=$(cut -d' ' -f1,2 "$key")"
    done
    echo "end=1"
} >"$ready.tmp" && mv "$ready.tmp" "$ready"
echo "deepbox: box $box's engine listens on $socket"

while kill -0 "$service" 2>/dev/null; do
    sleep 5 &
    wait $!
done
finish
