#!/bin/sh
# deepbox's Slurm Epilog (slurm.conf: Epilog=/etc/slurm/epilog.d/deepbox.sh, or called from the
# cluster's own Epilog). Runs as root on the node after every job; removes the containers and volumes
# a deepbox job left when it was killed without TERM (a box's own job removes them otherwise), so no
# box outlives its job even with proctrack/linuxproc, where Podman's conmon escapes the job.
[ -n "${SLURM_JOB_ID:-}" ] && [ -n "${SLURM_JOB_USER:-}" ] || exit 0
uid=$(id -u "$SLURM_JOB_USER" 2>/dev/null) || exit 0
[ "$uid" != 0 ] || exit 0
run="/run/user/$uid"
[ -d "$run" ] || run="/tmp/deepbox-run-$uid"
[ -d "$run" ] || exit 0  # this user never ran a box here
label="deepbox.slurm.job=$SLURM_JOB_ID"
runuser -u "$SLURM_JOB_USER" -- env XDG_RUNTIME_DIR="$run" HOME="$(getent passwd "$SLURM_JOB_USER" | cut -d: -f6)" \
    sh -c 'cd / && ids=$(podman ps -aq --filter "label=$1") && { [ -z "$ids" ] || podman rm -f -v -t 0 $ids; } &&
           volumes=$(podman volume ls -q --filter "label=$1") && { [ -z "$volumes" ] || podman volume rm -f $volumes; }
           for pid in $(pgrep -u "$(id -u)" -x conmon); do  # exec sessions of containers now gone
               container=$(tr "\0" "\n" <"/proc/$pid/cmdline" 2>/dev/null | sed -n "/^-c\$/{n;p;q}")
               [ -z "$container" ] || podman container exists "$container" || kill "$pid" 2>/dev/null
           done' \
    sh "$label" >/dev/null 2>&1
exit 0
