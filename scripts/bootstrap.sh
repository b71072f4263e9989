#!/usr/bin/env bash
# Set up everything dualdc needs on a Debian 12 machine, idempotently:
#   - the Debian packages the lab twin, the roles and the diagrams use (as root);
#   - a virtualenv in .venv with dualdc and its dev tools.
# Packages come from the machine's configured apt sources and package index; nothing else
# is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-dev git
  debootstrap nftables iproute2 openssh-server openssh-client
  util-linux procps psmisc graphviz rsync ca-certificates
  # the DR tests run real PostgreSQL and pgBackRest on the controller too (tests/ops/test_drswitch_pg.py)
  postgresql pgbackrest
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: these Debian packages are missing: ${missing[*]}" >&2
    echo "bootstrap: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.dualdc-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing dualdc and its dev tools into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
# network-config-analyzer: the independent NetworkPolicy analyzer the tests use as an oracle
# (tests/stacks/test_analyzer.py). Its exact pins (networkx, PyYAML …) clash with the
# project's, so it lives in a virtualenv of its own.
# The range lets its patch releases in; a minor release is taken on purpose, after a look.
NCA_SPEC="network-config-analyzer>=2.1.0,<2.2"
nca_stamp=.venv-nca/.dualdc-installed
if [ ! -f "$nca_stamp" ] || [ "$(cat "$nca_stamp")" != "$NCA_SPEC" ]; then
  echo "bootstrap: installing $NCA_SPEC into .venv-nca" >&2
  [ -x .venv-nca/bin/python ] || "$PYTHON" -m venv .venv-nca
  .venv-nca/bin/python -m pip install -q "$NCA_SPEC"
  echo "$NCA_SPEC" > "$nca_stamp"
fi
echo "bootstrap: ready (.venv/bin/invoke --list shows the tasks)" >&2
