"""The catalog against the seed pages themselves: every per-region row, every host template."""

from __future__ import annotations

import pytest

from tests import seedtables
from edgecheck.catalog import load_catalog


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


REGISTRY = seedtables.registry_rows()
OSS = seedtables.oss_rows()


def test_seed_tables_parsed_completely():
    # Guards the parser itself: the page has 26 registry rows and 27 OSS rows.
    assert len(REGISTRY) == 26
    assert len(OSS) == 27


@pytest.mark.parametrize("region", sorted(REGISTRY))
def test_registry_row_in_catalog(catalog, region):
    row = REGISTRY[region]
    entry = catalog.regions[region]
    assert entry.name == row.name
    assert entry.registry_vpc_endpoint == row.endpoint
    assert list(entry.registry_routes) == row.routes
    # The endpoint template of the catalog produces the table's endpoint.
    (template,) = [e.host for e in catalog.endpoints if e.routes == "registry"]
    assert template.format(region=region) == row.endpoint


@pytest.mark.parametrize("region", sorted(OSS))
def test_oss_row_in_catalog(catalog, region):
    row = OSS[region]
    entry = catalog.regions[region]
    assert entry.oss_public_endpoint == row.public
    assert entry.oss_internal_endpoint == row.internal
    expected_dual = None if row.dual_stack == "Not supported" else row.dual_stack
    assert entry.oss_dual_stack_endpoint == expected_dual
    assert list(entry.oss_vip_cidrs) == row.cidrs
    # Every OSS internal name the catalog templates lives under the table's internal endpoint.
    oss = [e for e in catalog.endpoints if e.routes == "oss"]
    assert oss, "no endpoint routed by the OSS blocks"
    for e in oss:
        assert e.host.format(region=region).endswith("." + row.internal)


def test_no_region_in_catalog_without_a_seed_row(catalog):
    personal = set(seedtables.registry_vpc_personal_regions())
    assert set(catalog.regions) == set(REGISTRY) | set(OSS) | personal


def test_registry_vpc_personal_regions_match_the_seed_list(catalog):
    (entry,) = [e for e in catalog.endpoints if e.host == "registry-vpc.{region}.aliyuncs.com"]
    assert sorted(entry.regions) == sorted(seedtables.registry_vpc_personal_regions())


def test_every_host_template_is_spelled_as_in_its_seed(catalog):
    assert catalog.endpoints
    for entry in catalog.endpoints:
        assert (seedtables.seeds_dir() / entry.source).is_file(), entry.id
        if entry.host is not None:
            assert entry.host in seedtables.seed_text(entry.source[:3]), entry.id


def test_every_seed_cited_exists(catalog):
    cited = {s.strip() for e in catalog.inbound for s in e.source.split(",")}
    cited |= {t.source for t in catalog.tools} | {r.source for r in catalog.regions.values()}
    assert cited
    for name in cited:
        assert (seedtables.seeds_dir() / name).is_file(), name


def test_seed_tools_are_all_in_catalog(catalog):
    # Seed 001: "net-tools, iproute, chrony (or ntpdate), crontabs, pciutils, socat, ebtables,
    # iptables, and conntrack-tools".
    assert [t.id for t in catalog.tools] == [
        "net-tools", "iproute", "chrony", "crontabs", "pciutils", "socat", "ebtables", "iptables", "conntrack-tools",
    ]
    text = seedtables.seed_text("001")
    for tool in catalog.tools:
        assert tool.id in text
