#!/bin/sh
# Installs the Debian packages the interop tests start: OpenSSH's sshd, vsftpd and Dovecot (IMAP), and systemd for
# systemd-analyze (tests/test_service_unit.py verifies contrib/systemd/cdr-ingest.service). Idempotent; needs root
# (CI runs as root). Without root it says so and leaves the interop tests to skip (or fail under CI=true).
set -e
missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
[ -x /usr/sbin/vsftpd ] || missing="$missing vsftpd"
[ -x /usr/sbin/dovecot ] || missing="$missing dovecot-imapd"
command -v systemd-analyze >/dev/null || missing="$missing systemd"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "tests/setup-debian.sh: not root; cannot install$missing" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
