#!/bin/sh
# Build edgecheck's distributables into dist/ (or $DIST):
#
#   packaging/build.sh wheel    sdist, then the wheel built from that sdist (proves it complete)
#   packaging/build.sh zipapp   edgecheck-<arch>.pyz per architecture (needs the wheel)
#   packaging/build.sh deb      edgecheck_<ver>-1_<debarch>.deb per architecture (needs zipapps)
#   packaging/build.sh rpm      edgecheck-<ver>-1.<arch>.rpm per architecture (needs zipapps)
#   packaging/build.sh all      everything above
#
# Environment: PYTHON (default python3, needs setuptools >= 61 and pip), ARCHES (default
# "x86_64 aarch64"), DIST, SOURCE_DATE_EPOCH (reproducible timestamps; default: last commit).
# Tools: pip (PyPI reachable, or PIP_FIND_LINKS / PIP_INDEX_URL for a mirror), dpkg-deb and
# fakeroot-free `dpkg-deb --root-owner-group` for .deb, rpmbuild for .rpm.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PYTHON=${PYTHON:-python3}
ARCHES=${ARCHES:-"x86_64 aarch64"}
DIST=${DIST:-$ROOT/dist}
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

version() {
    "$PYTHON" -c 'import re,sys; print(re.search(r"__version__\s*=\s*\"([^\"]+)\"", open(sys.argv[1]).read()).group(1))' \
        "$ROOT/edgecheck/__init__.py"
}
VERSION=$(version)

log() { printf '%s\n' "build.sh: $*" >&2; }

# Replace a line "@USER_SETUP@" with the shared user creation function.
with_user_setup() {
    awk -v f="$HERE/common/user-setup.sh" '/^@USER_SETUP@$/ { while ((getline l < f) > 0) print l; next } 1' "$1"
}

build_wheel() {
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # A clean copy of the source tree: setuptools caches build/ in-tree and would ship files
    # deleted since, and other work in progress must not leak into the artefacts.
    (cd "$ROOT" && tar --exclude=.git --exclude=dist --exclude=build --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=.venv --exclude=.pytest_cache -cf - .) | (mkdir "$tmp/src" && tar -xf - -C "$tmp/src")
    rm -f "$DIST"/edgecheck-*.tar.gz "$DIST"/edgecheck-*.whl
    # sdist: setuptools' PEP 517 hook called directly (setuptools is the backend pyproject.toml
    # names; no `build` frontend to install). The wheel is then built by pip *from that sdist*
    # in an isolated build environment, as a user's `pip install edgecheck-X.tar.gz` would:
    # anything missing from the sdist breaks the wheel here, not on a node.
    # The backend goes into a private directory (build isolation by hand): the builder's own
    # environment may have no or an old setuptools (venvs on Python >= 3.12 have none).
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --target "$tmp/backend" \
        "$("$PYTHON" -c 'import re,sys; print(re.search(r"requires\s*=\s*\[\s*\"([^\"]+)\"", open(sys.argv[1]).read()).group(1))' "$ROOT/pyproject.toml")"
    (cd "$tmp/src" && PYTHONPATH="$tmp/backend" "$PYTHON" -W ignore -c 'import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))' "$DIST" >"$tmp/sdist.name")
    sdist=$(tail -n 1 "$tmp/sdist.name")
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$DIST" "$DIST/$sdist"
    wheel=edgecheck-$VERSION-py3-none-any.whl
    [ -f "$DIST/$wheel" ] || { log "pip did not produce $wheel"; exit 1; }
    rm -rf "$tmp"
    trap - EXIT
    log "built $DIST/$sdist and $DIST/$wheel"
}

the_wheel() {
    set -- "$DIST"/edgecheck-"$VERSION"-py3-none-any.whl
    [ -f "$1" ] || build_wheel
    echo "$DIST/edgecheck-$VERSION-py3-none-any.whl"
}

build_zipapp() {
    wheel=$(the_wheel)
    for arch in $ARCHES; do
        "$PYTHON" "$HERE/build_zipapp.py" --wheel "$wheel" --arch "$arch" --out "$DIST/edgecheck-$arch.pyz"
    done
}

need_zipapp() {
    [ -f "$DIST/edgecheck-$1.pyz" ] || ARCHES=$1 build_zipapp
}

debarch() {
    case $1 in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) echo "$1" ;; esac
}

build_deb() {
    for arch in $ARCHES; do
        need_zipapp "$arch"
        darch=$(debarch "$arch")
        stage=$(mktemp -d)
        d=$stage/root
        install -d -m 0755 "$d/DEBIAN" "$d/usr/bin" "$d/usr/lib/edgecheck" "$d/lib/systemd/system" \
            "$d/usr/lib/sysusers.d" "$d/usr/lib/tmpfiles.d" "$d/etc/default" \
            "$d/usr/share/doc/edgecheck/examples"
        install -m 0755 "$HERE/common/edgecheck.sh" "$d/usr/bin/edgecheck"
        install -m 0644 "$DIST/edgecheck-$arch.pyz" "$d/usr/lib/edgecheck/edgecheck.pyz"
        install -m 0644 "$ROOT/systemd/edgecheck.service" "$ROOT/systemd/edgecheck.timer" "$d/lib/systemd/system/"
        install -m 0644 "$HERE/common/edgecheck.sysusers" "$d/usr/lib/sysusers.d/edgecheck.conf"
        install -m 0644 "$HERE/common/edgecheck.tmpfiles" "$d/usr/lib/tmpfiles.d/edgecheck.conf"
        install -m 0644 "$ROOT/systemd/edgecheck.env.example" "$d/etc/default/edgecheck"
        install -m 0644 "$HERE/deb/copyright" "$ROOT/README.md" "$d/usr/share/doc/edgecheck/"
        install -D -m 0644 "$HERE/deb/lintian-overrides" "$d/usr/share/lintian/overrides/edgecheck"
        install -d -m 0755 "$d/usr/share/man/man1"
        gzip -9n < "$HERE/common/edgecheck.1" > "$d/usr/share/man/man1/edgecheck.1.gz"
        chmod 0644 "$d/usr/share/man/man1/edgecheck.1.gz"
        install -m 0644 "$ROOT/systemd/port-owners.conf" "$ROOT/systemd/firewall-read.conf" \
            "$HERE/prometheus/edgecheck.rules.yml" "$d/usr/share/doc/edgecheck/examples/"
        date=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a, %d %b %Y %H:%M:%S +0000')
        sed -e "s/@VERSION@/$VERSION-1/" -e "s/@UPSTREAM@/$VERSION/" -e "s/@DATE@/$date/" \
            "$HERE/deb/changelog.in" | gzip -9n > "$d/usr/share/doc/edgecheck/changelog.Debian.gz"
        chmod 0644 "$d/usr/share/doc/edgecheck/changelog.Debian.gz"
        with_user_setup "$HERE/deb/postinst.in" > "$d/DEBIAN/postinst"
        install -m 0755 "$HERE/deb/prerm" "$HERE/deb/postrm" "$d/DEBIAN/"
        chmod 0755 "$d/DEBIAN/postinst"
        echo /etc/default/edgecheck > "$d/DEBIAN/conffiles"
        chmod 0644 "$d/DEBIAN/conffiles"
        size=$(du -sk --exclude=DEBIAN "$d" | cut -f1)
        sed -e "s/@VERSION@/$VERSION-1/" -e "s/@DEBARCH@/$darch/" -e "s/@SIZE@/$size/" \
            "$HERE/deb/control.in" > "$d/DEBIAN/control"
        (cd "$d" && find . -path ./DEBIAN -prune -o -type f -print | sed 's#^\./##' | LC_ALL=C sort | xargs md5sum) > "$d/DEBIAN/md5sums"
        chmod 0644 "$d/DEBIAN/control" "$d/DEBIAN/md5sums"
        find "$d" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
        out="$DIST/edgecheck_${VERSION}-1_${darch}.deb"
        dpkg-deb --root-owner-group -Zxz --build "$d" "$out" >/dev/null
        rm -rf "$stage"
        log "built $out"
    done
}

build_rpm() {
    for arch in $ARCHES; do
        need_zipapp "$arch"
        top=$(mktemp -d)
        src=$top/SOURCES
        mkdir -p "$src" "$top/SPECS"
        cp "$DIST/edgecheck-$arch.pyz" "$src/edgecheck.pyz"
        cp "$HERE/common/edgecheck.sh" "$HERE/common/edgecheck.sysusers" "$HERE/common/edgecheck.tmpfiles" \
            "$ROOT/systemd/edgecheck.service" "$ROOT/systemd/edgecheck.timer" "$ROOT/systemd/edgecheck.env.example" \
            "$ROOT/systemd/port-owners.conf" "$ROOT/systemd/firewall-read.conf" "$HERE/prometheus/edgecheck.rules.yml" "$ROOT/README.md" \
            "$HERE/common/edgecheck.1" "$src/"
        with_user_setup "$HERE/rpm/edgecheck.spec" > "$top/SPECS/edgecheck.spec"
        rpmbuild -bb --quiet --target "$arch-linux" \
            --define "_topdir $top" --define "_edgecheck_version $VERSION" --define "_edgecheck_src $src" \
            --define "use_source_date_epoch_as_buildtime 1" --define "clamp_mtime_to_source_date_epoch 1" \
            --define "_buildhost edgecheck-build" \
            "$top/SPECS/edgecheck.spec" >/dev/null
        out=$(find "$top/RPMS" -name '*.rpm' | head -n 1)
        cp "$out" "$DIST/"
        rm -rf "$top"
        log "built $DIST/$(basename "$out")"
    done
}

case ${1:-all} in
    wheel | sdist) build_wheel ;;
    zipapp) build_zipapp ;;
    deb) build_deb ;;
    rpm) build_rpm ;;
    all) build_wheel && build_zipapp && build_deb && build_rpm ;;
    *) echo "usage: $0 wheel|zipapp|deb|rpm|all" >&2; exit 2 ;;
esac
