#!/bin/sh
# edgecheck: run the bundled single-file application with a Python >= 3.9 from this host.
# -I -S: isolated mode without site-packages, so only the bundled dependencies and the standard
# library are imported, whatever else is installed on the node. EDGECHECK_PYTHON picks one.
# /usr/bin/edgecheck -> /usr/lib/edgecheck/edgecheck.pyz, found relative to this script (symlinks
# resolved) so the package also works unpacked under another root.
PYZ=$(dirname "$(readlink -f "$0")")/../lib/edgecheck/edgecheck.pyz
for py in ${EDGECHECK_PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
    if command -v "$py" >/dev/null 2>&1 &&
        "$py" -I -S -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
        exec "$py" -I -S "$PYZ" "$@"
    fi
done
echo "edgecheck: needs Python >= 3.9 (python3, python3.9 ... python3.13); none found on PATH" >&2
exit 69
