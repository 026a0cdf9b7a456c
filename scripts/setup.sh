#!/usr/bin/env bash
# Set up hearth in .venv: dependencies, and llama-cpp-python built with the ggml RPC backend.
# The llama-cpp-python wheel is built once (about 5 minutes on 2 cores) and cached in
# $HEARTH_WHEEL_CACHE (default ~/.cache/hearth/wheels); later set-ups install it in seconds.
#   bash scripts/setup.sh          # run-time dependencies
#   bash scripts/setup.sh --test   # plus the test and lint dependencies
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
WHEELS=${HEARTH_WHEEL_CACHE:-$HOME/.cache/hearth/wheels}
PY=${PYTHON:-python3}
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test,lint]"; fi

# The trusted radius's WireGuard runs in userspace (wireguard-go) where the kernel has no module.
# Installing Debian packages needs root; without it hearth uses its unprivileged encrypted tunnel.
if ! command -v wireguard-go >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing wireguard-go and wireguard-tools (Debian packages)..." >&2
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wireguard-go wireguard-tools >/dev/null; }
  apt_install || { apt-get update -q >/dev/null && apt_install; } \
    || echo "Could not install wireguard-go; hearth will offer its encrypted fallback tunnel instead." >&2
fi

# The public swarm's ledger tests start their own PostgreSQL 15 cluster (tests/public_swarm/postgres.py).
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing PostgreSQL 15 (Debian package) for the ledger's tests..." >&2
  pg_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 >/dev/null; }
  pg_install || { apt-get update -q >/dev/null && pg_install; } \
    || echo "Could not install postgresql-15; the ledger's PostgreSQL tests cannot run." >&2
fi

# The coordinator's health page and the chat page are tested in headless Chromium
# (tests/public_swarm/test_health_page.py, tests/server/test_chat_page_browser.py: playwright drives this one).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Chromium (Debian package) for the health page's and chat page's tests..." >&2
  chromium_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
  chromium_install || { apt-get update -q >/dev/null && chromium_install; } \
    || echo "Could not install chromium; the browser tests cannot run." >&2
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip

mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $LLAMA_VERSION with the RPC backend (once, about 5 minutes)..." >&2
  CMAKE_ARGS="-DGGML_RPC=ON -DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    .venv/bin/python -m pip wheel -q --no-deps --no-binary llama-cpp-python -w "$WHEELS" \
    "llama-cpp-python==$LLAMA_VERSION"
fi

.venv/bin/python -m pip install -q --find-links "$WHEELS" --only-binary llama-cpp-python -e ".$extras"

# A llama-cpp-python installed earlier without RPC would satisfy pip; replace it with ours.
if ! .venv/bin/python -c "from hearth.ggml.native import check_rpc_backend; check_rpc_backend()" 2>/dev/null; then
  .venv/bin/python -m pip install -q --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
  .venv/bin/python -c "from hearth.ggml.native import check_rpc_backend; check_rpc_backend()"
fi
echo "hearth is set up in .venv" >&2
