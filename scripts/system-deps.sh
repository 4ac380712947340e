#!/usr/bin/env bash
# Installs the machine-level packages Crucible needs (runsc, debootstrap; chromium for browser
# tests, dockerd for the docker engine, when asked). Idempotent and quick when everything is there.
#   scripts/system-deps.sh [--with-chromium] [--with-docker]
set -euo pipefail

want_chromium=0
want_docker=0
for arg in "$@"; do
  case "$arg" in
    --with-chromium) want_chromium=1 ;;
    --with-docker) want_docker=1 ;;
    *) echo "system-deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
have runsc || missing+=(runsc)
have debootstrap || missing+=(debootstrap)
have python3 || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
have make || missing+=(make)
if (( want_chromium )); then
  have chromium || missing+=(chromium)
fi
# Debian's docker.io brings dockerd (with containerd and runc): a docker CLI alone is not enough.
# There is no systemd here; sandbox/docker/daemon.py starts it by hand when the docker engine needs it.
if (( want_docker )); then
  PATH="$PATH:/usr/sbin:/sbin" have dockerd || missing+=(docker.io)
fi
(( ${#missing[@]} == 0 )) && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "crucible: missing ${missing[*]}; run this command as root once (it installs them with apt)." >&2
  exit 1
fi

. /etc/os-release
codename="${VERSION_CODENAME:-bookworm}"
export DEBIAN_FRONTEND=noninteractive

# bookworm's own runsc (2022) has only the slow ptrace platform; bookworm-backports has systrap.
# Add the backports suite next to the machine's existing Debian source (same mirror, same keyring).
if [[ "$codename" == "bookworm" && ! -e /etc/apt/sources.list.d/crucible-backports.sources \
      && ! -e /etc/apt/sources.list.d/crucible-backports.list ]]; then
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    key=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
      "${uri:-http://deb.debian.org/debian}" "${key:-/usr/share/keyrings/debian-archive-keyring.gpg}" \
      > /etc/apt/sources.list.d/crucible-backports.sources
  else
    uri=$(awk '$1=="deb" && $0 !~ /security/ && / bookworm / {for(i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
    echo "deb ${uri:-http://deb.debian.org/debian} bookworm-backports main" \
      > /etc/apt/sources.list.d/crucible-backports.list
  fi
fi

apt-get update -qq
if [[ " ${missing[*]} " == *" runsc "* ]]; then
  if [[ "$codename" == "bookworm" ]]; then
    apt-get install -y -qq -t bookworm-backports runsc || apt-get install -y -qq runsc
  else
    apt-get install -y -qq runsc
  fi
fi
# docker.io's maintainer scripts would start a system dockerd with its default bridge and iptables
# rules: keep services from starting during the install, as container images do.
if [[ " ${missing[*]} " == *" docker.io "* && ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
rest=()
for p in "${missing[@]}"; do [[ "$p" != runsc ]] && rest+=("$p"); done
(( ${#rest[@]} )) && apt-get install -y -qq --no-install-recommends "${rest[@]}"
exit 0
