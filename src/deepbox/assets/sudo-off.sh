#!/bin/sh
# deepbox: the box user has no sudo ([user] sudo = false). This stands in for sudo to say so and how to
# change it, instead of a password prompt no password answers.
echo "sudo: sudo is off in this box; set sudo = true under [user] in deepbox.toml and run \`deepbox up\`," \
    "or list the system packages you need in apt = [...] there." >&2
exit 1
