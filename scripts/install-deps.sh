#!/usr/bin/env bash
# Install the system packages the tests and benchmarks need (idempotent).
#
#   postgresql     real PostgreSQL server for the database tests (tests/servers.py)
#   postfix        only for smtp-sink / smtp-source (benchmarks); no mail system is set up
#   dovecot-imapd  IMAP server for the IMAP tests
#   make           used by .ci/run
#   chromium       the browser the console's tests drive with Playwright (/usr/bin/chromium)
#   libpango-1.0-0, libpangoft2-1.0-0, libharfbuzz-subset0, fonts-dejavu-core
#                  what WeasyPrint needs to print letters as PDF (text layout, font subsetting, a font)
#
# Nothing is started or configured system-wide: the tests run their own
# instances on loopback, on free ports, in temporary directories.
#
# Does nothing when everything is already there, except under CI=true, where
# apt-get update + install always run (fast when installed) so that CI checks
# the install step a fresh machine depends on.
set -euo pipefail

packages=(postgresql postfix dovecot-imapd make chromium libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core)

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/sbin/smtp-sink ] || missing+=(postfix)
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
command -v make >/dev/null 2>&1 || missing+=(make)
[ -x /usr/bin/chromium ] || missing+=(chromium)
for lib in libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core; do
    dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "install ok installed" || missing+=("$lib")
done

if [ "${CI:-}" != "true" ] && [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all system packages present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if [ ${#missing[@]} -eq 0 ]; then
        echo "install-deps: not root, skipping apt-get; all system packages present"
        exit 0
    fi
    echo "install-deps: missing system packages: ${missing[*]}" >&2
    echo "install them as root with:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${packages[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Install postfix without a mail system configuration: we only want its
# smtp-sink/smtp-source tools, not a running MTA (and no debconf prompt).
if command -v debconf-set-selections >/dev/null 2>&1; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
fi

echo "install-deps: apt-get install ${packages[*]}"
apt-get -o Acquire::Retries=3 update -q
apt-get -o Acquire::Retries=3 install -y -q --no-install-recommends "${packages[@]}" </dev/null
