# deepbox: the box's secrets ([secrets] in deepbox.toml), which `deepbox up` writes to the /run/deepbox
# tmpfs, for the box user's shells. Login shells read this from /etc/profile; bash reads it from
# /etc/bash.bashrc, which Debian's and Ubuntu's bash read for commands run over ssh too.
if [ -r /run/deepbox/secrets ]; then
    . /run/deepbox/secrets
elif [ -e /run/deepbox/sshd_config ] && [ ! -e /run/deepbox/secrets ] && [ -z "${_deepbox_noted:-}" ]; then
    # The engine restarted the box (the tmpfs was emptied) and `deepbox up` has not run since.
    case $- in *i*) echo "deepbox: the box restarted without its secrets; run \`deepbox up\` to hand them over." >&2 ;; esac
    _deepbox_noted=1
fi
