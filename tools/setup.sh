# Shared by tools/run and tools/test (sourced, not run): installs the Debian
# packages Narae needs when they are missing, and configures and builds.
# Usage: source tools/setup.sh; narae_install_packages; narae_build DIR [cmake args]

NARAE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NARAE_PACKAGES=(build-essential cmake librocksdb-dev libboost-dev libcereal-dev libssl-dev
  libgtest-dev nlohmann-json3-dev libcli11-dev libjemalloc-dev)
NARAE_TEST_PACKAGES=(libxml2-utils clang-14 libclang-rt-14-dev)

narae_install_packages() {
  local missing=()
  for p in "${NARAE_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "narae: installing missing Debian packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
      echo "narae: run as root (or install them yourself): apt-get install ${missing[*]}" >&2
      return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

narae_build() {
  local dir="$1"; shift
  cmake -S "$NARAE_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}
