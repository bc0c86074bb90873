#!/usr/bin/env bash
# A managed host for the fleet scenario: sshd with the controller's key, Python 3 and the docker CLI
# (bind-mounted from the lab host together with its socket).
set -euo pipefail
mkdir -p /run/sshd /root/.ssh
chmod 700 /root/.ssh
if [ -n "${SSH_AUTHORIZED_KEY:-}" ]; then printf '%s\n' "$SSH_AUTHORIZED_KEY" >/root/.ssh/authorized_keys; fi
chmod 600 /root/.ssh/authorized_keys 2>/dev/null || true
ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no -p "${SSH_PORT:-22}"
