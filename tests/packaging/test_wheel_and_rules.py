"""sdist and wheel contents. (The shipped alert rules: tests/report/test_alert_rules.py.)"""

from __future__ import annotations

import tarfile
import zipfile

from tests.packaging.packaging_helpers import REPO, VERSION


def test_wheel_has_every_package_and_the_catalog(dist):
    with zipfile.ZipFile(dist / f"edgecheck-{VERSION}-py3-none-any.whl") as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"edgecheck-{VERSION}.dist-info/METADATA").decode()
    # the catalog data (targets/*.toml at the top of the repo) ships as edgecheck/targets/
    tomls = sorted((REPO / "targets").glob("*.toml"))
    assert len(tomls) >= 4, tomls
    for toml in tomls:
        assert f"edgecheck/targets/{toml.name}" in names, toml.name
    # every Python package of the source tree is in the wheel (a forgotten one breaks the zipapp)
    inits = sorted((REPO / "edgecheck").rglob("__init__.py"))
    assert len(inits) >= 5, inits
    for init in inits:
        rel = init.relative_to(REPO).as_posix()
        assert rel in names, rel
    assert "edgecheck/report/schema.json" in names
    assert "Requires-Python: >=3.9" in metadata


def test_sdist_carries_units_and_packaging(dist):
    with tarfile.open(dist / f"edgecheck-{VERSION}.tar.gz") as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for path in ("systemd/edgecheck.service", "systemd/edgecheck.timer", "systemd/edgecheck.env.example",
                 "packaging/build.sh", "packaging/zipapp/bootstrap.py", "targets/regions.toml", "pyproject.toml"):
        assert path in names, path
