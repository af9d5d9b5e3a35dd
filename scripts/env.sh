# Shared by the scripts: toolchain set-up on Debian.

# Build outputs live outside the clone so that repeated runs are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages the build needs: a C/C++ compiler for RocksDB and
# librdkafka, libclang for RocksDB's bindings.
install_build_deps() {
    local missing=()
    for pkg in build-essential libclang-dev pkg-config; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is missing: install Rust with https://rustup.rs first" >&2
        exit 1
    fi
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
}

# Servers the end-to-end tests start on loopback: MariaDB and PostgreSQL
# from Debian, moto's S3 server in a virtualenv beside the build outputs
# (with kubernetes-validate for the manifests); headless Chromium for the
# web UI test.
# (Kafka tests use librdkafka's mock cluster, which is built in.)
install_test_deps() {
    local missing=()
    command -v mariadbd >/dev/null 2>&1 || missing+=(mariadb-server)
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    if [ "${#missing[@]}" -gt 0 ]; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    local venv="${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}/venv"
    if [ ! -x "$venv/bin/moto_server" ]; then
        if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
            as_root apt-get update -qq
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        fi
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q 'moto[server]'
    fi
    # Validates deploy/kubernetes against the Kubernetes schemas, offline.
    [ -x "$venv/bin/kubernetes-validate" ] || "$venv/bin/pip" install -q kubernetes-validate
    export PATH="$venv/bin:$PATH"
}

# Tool chains for jobs in other languages: the Python SDK with
# componentize-py (PyPI) in a virtualenv, the JavaScript SDK's
# ComponentizeJS and bundler (npm) in guest-sdk/js/node_modules.
install_guest_toolchains() {
    local missing=()
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
    if [ "${#missing[@]}" -gt 0 ]; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    # The bundler needs Node 20.19 or newer; Debian 12 ships 18. Take the
    # Node binary from the npm registry then.
    local major
    major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
    if [ "$major" -lt 20 ]; then
        local arch nodedir
        arch="$(dpkg --print-architecture | sed 's/amd64/x64/')"
        nodedir="${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}/node"
        if [ ! -x "$nodedir/node_modules/node-linux-$arch/bin/node" ]; then
            npm install --prefix "$nodedir" --no-audit --no-fund --loglevel=error \
                "node-linux-$arch@20.19.6"
        fi
        export PATH="$nodedir/node_modules/node-linux-$arch/bin:$PATH"
    fi
    local venv="${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}/py-guest"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check ./guest-sdk/python
    export WEIR_PY_BUILD="$venv/bin/weir-py"
    if [ ! -f guest-sdk/js/node_modules/.package-lock.json ] ||
        [ guest-sdk/js/package-lock.json -nt guest-sdk/js/node_modules/.package-lock.json ]; then
        # `npm install` keeps to the lock file; `npm ci` trips over the lock
        # file's platform-specific optional packages.
        (cd guest-sdk/js && npm install --no-audit --no-fund --loglevel=error)
    fi
    export WEIR_JS_BUILD="$PWD/guest-sdk/js/bin/weir-js.js"
}

# Flink's own clients, run against a real `weir session` by the tests:
# Apache Flink 2.3's CLI (the apache-flink wheels from PyPI, unpacked beside
# the build outputs, run with Debian's Java) and the flink-rest-client
# package from PyPI.
install_flink_clients() {
    command -v java >/dev/null 2>&1 || {
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless
    }
    local tools="${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}"
    local flink="$tools/flink-2.3.0"
    if [ ! -x "$flink/pyflink/bin/flink" ]; then
        local dl="$tools/flink-wheels"
        mkdir -p "$dl"
        python3 -m pip download -q --disable-pip-version-check --no-deps -d "$dl" \
            apache-flink==2.3.0 apache-flink-libraries==2.3.0
        rm -rf "$flink.partial" && mkdir -p "$flink.partial"
        for w in "$dl"/apache_flink-2.3.0-*.whl "$dl"/apache_flink_libraries-2.3.0-*.whl; do
            (cd "$flink.partial" && python3 -m zipfile -e "$w" .)
        done
        chmod +x "$flink.partial"/pyflink/bin/*
        rm -rf "$flink" && mv "$flink.partial" "$flink"
        rm -rf "$dl"
    fi
    export WEIR_FLINK_CLI="$flink/pyflink/bin/flink"
    local venv="$tools/venv"
    "$venv/bin/python" -c 'import flink_rest_client' >/dev/null 2>&1 ||
        "$venv/bin/pip" install -q --disable-pip-version-check 'flink-rest-client==1.0.8'
    export WEIR_FLINK_REST_PYTHON="$venv/bin/python"
}
