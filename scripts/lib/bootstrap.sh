# shellcheck shell=bash
# Shared by scripts/demo and scripts/test: install what a fresh Debian 12 machine lacks, keep
# .venv in step with requirements-test.txt, and link the checkout where Ansible finds
# safeship.webapp. Source it after setting `root` to the checkout.
: "${root:?set root to the checkout before sourcing scripts/lib/bootstrap.sh}"

say() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ensure_apt_packages PKG...: apt-get install the packages that are not installed yet.
ensure_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "missing ${missing[*]} and no apt-get here; install them and run again." >&2
        return 1
    fi
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install ${missing[*]}." >&2; return 1; }
        sudo=(sudo)
    fi
    say "Installing ${missing[*]} (apt-get)"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# ensure_venv: .venv holds exactly requirements-test.txt; the stamp is the sha256 of the file it
# was installed from, so an edited pin reinstalls.
ensure_venv() {
    local python="${PYTHON:-python3}" venv="$root/.venv" requirements="$root/requirements-test.txt"
    local stamp="$venv/.requirements.sha256" wanted
    wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        say "Creating $venv"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        rm -f "$stamp"
    fi
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
        say "Installing requirements-test.txt into .venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        printf '%s\n' "$wanted" >"$stamp"
    fi
}

# ensure_collection_link: .build/collections/ansible_collections/safeship/webapp -> the checkout.
ensure_collection_link() {
    local link="$root/.build/collections/ansible_collections/safeship/webapp"
    mkdir -p "$(dirname "$link")"
    if [[ -e "$link" && ! -L "$link" ]]; then
        echo "$link exists and is not a symlink; move it away and run again." >&2
        return 1
    fi
    ln -sfn "$root" "$link"
    export ANSIBLE_COLLECTIONS_PATH="$root/.build/collections"
}

# ensure_node: node and npm on PATH (Debian's nodejs and npm when missing).
ensure_node() {
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        return 0
    fi
    ensure_apt_packages nodejs npm
}

# ensure_node_tools: .build/node/node_modules holds exactly tools/node/package-lock.json (pm2);
# its bin directory goes first on PATH. The stamp is the lock file's sha256.
ensure_node_tools() {
    ensure_node
    local dir="$root/.build/node" lock="$root/tools/node/package-lock.json" wanted
    wanted="$(sha256sum "$lock" | cut -d' ' -f1)"
    if [[ ! -x "$dir/node_modules/.bin/pm2" || ! -f "$dir/.lock.sha256" || "$(cat "$dir/.lock.sha256")" != "$wanted" ]]; then
        say "Installing tools/node (pm2) into .build/node"
        mkdir -p "$dir"
        cp "$root/tools/node/package.json" "$lock" "$dir/"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        printf '%s\n' "$wanted" >"$dir/.lock.sha256"
    fi
    export PATH="$dir/node_modules/.bin:$PATH"
}

# ensure_podman_collection: containers.podman (Molecule's podman driver needs it) in .build/collections.
# Galaxy is not reachable from every machine, but PyPI is: the collection comes out of the community
# `ansible` package that matches our ansible-core (12.x <-> 2.19), pinned here, without installing it.
ANSIBLE_COMMUNITY_PACKAGE="ansible==12.3.0"
ensure_podman_collection() {
    local dest="$root/.build/collections/ansible_collections/containers/podman" cache="$root/.build/cache"
    local stamp="$dest/.from"
    [[ -f "$stamp" && "$(cat "$stamp")" == "$ANSIBLE_COMMUNITY_PACKAGE" ]] && return 0
    say "Unpacking containers.podman from $ANSIBLE_COMMUNITY_PACKAGE (PyPI)"
    mkdir -p "$cache"
    "$root/.venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$cache" \
        "$ANSIBLE_COMMUNITY_PACKAGE"
    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    "$root/.venv/bin/python" - "$cache" "${ANSIBLE_COMMUNITY_PACKAGE#*==}" "$dest" <<'PY'
import glob, os, sys, zipfile
cache, version, dest = sys.argv[1:]
wheel = glob.glob(os.path.join(cache, "ansible-%s-*.whl" % version))[0]
prefix = "ansible_collections/containers/podman/"
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(name) as src, open(target, "wb") as out:
                out.write(src.read())
PY
    printf '%s\n' "$ANSIBLE_COMMUNITY_PACKAGE" >"$stamp"
}
