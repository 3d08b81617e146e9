"""The releases hakube knows (config/versions.py): every default exists as a
row with its checksums pinned, and config validation follows the table."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from config import ConfigError, load, raw_from_stack_file, versions
from config.spec import CNI_DEFAULT_VERSIONS, DEFAULT_ETCD_VERSION, DEFAULT_KUBERNETES_VERSION
from tests.conftest import ROOT

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def dev(**sections):
    """The dev stack's spec with these config sections in place of its own."""
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw.update(sections)
    return load(raw, "dev")


def refusal(**sections) -> str:
    """What config validation says of the dev stack with these sections."""
    with pytest.raises(ConfigError) as err:
        dev(**sections)
    return str(err.value)


def test_the_default_etcd_has_pinned_checksums_for_every_arch():
    assert DEFAULT_ETCD_VERSION in versions.ETCD_SHA256
    for arch in versions.ETCD_ARCHES:
        assert HEX64.match(versions.etcd_sha256(DEFAULT_ETCD_VERSION, arch) or ""), arch


def test_every_row_is_a_version_with_two_distinct_checksums():
    for version, (amd64, arm64) in versions.ETCD_SHA256.items():
        assert re.match(r"^3\.\d+\.\d+$", version)
        assert HEX64.match(amd64) and HEX64.match(arm64) and amd64 != arm64, version
    all_sums = [s for row in versions.ETCD_SHA256.values() for s in row]
    assert len(set(all_sums)) == len(all_sums), "a checksum appears twice: a copy error"


@pytest.mark.parametrize("stack", ["dev", "cka", "minimal"])
def test_shipped_stacks_install_a_pinned_etcd_and_a_known_kubernetes(stack):
    spec = load(raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml"), stack)
    assert spec.etcd.version == DEFAULT_ETCD_VERSION
    assert spec.etcd.sha256 == versions.etcd_sha256(spec.etcd.version, spec.etcd.arch)
    assert spec.kubernetes.version == DEFAULT_KUBERNETES_VERSION
    assert spec.kubernetes.minor in versions.KUBERNETES
    assert spec.kubernetes.cni.version == CNI_DEFAULT_VERSIONS[spec.kubernetes.cni.plugin]


def test_an_arm64_stack_gets_the_arm64_checksum():
    assert dev(etcd={"arch": "arm64"}).etcd.sha256 == versions.ETCD_SHA256[DEFAULT_ETCD_VERSION][1]


def test_a_release_without_a_row_falls_back_to_sha256sums_and_a_pin_wins():
    assert dev(etcd={"version": "3.5.1"}).etcd.sha256 is None
    assert dev(etcd={"version": DEFAULT_ETCD_VERSION, "sha256": "a" * 64}).etcd.sha256 == "a" * 64


def test_a_kubernetes_minor_without_a_row_is_refused_listing_those_there_are():
    said = refusal(kubernetes={"version": "1.38.0"})
    assert "hakube:kubernetes.version: 1.38.0" in said and "1.37" in said and "config/versions.py" in said


def test_kubernetes_1_37_renders_v1beta4_the_only_api_it_reads():
    assert dev(kubernetes={"version": "1.37.2"}).kubernetes.kubeadm_api == "v1beta4"
    assert all(api == "v1beta4" for minor, (api, _, _, _) in versions.KUBERNETES.items() if minor >= 31)


def test_etcd_3_7_is_accepted_and_checked_against_its_sums_file_with_a_warning():
    spec = dev(etcd={"version": "3.7.3"})
    assert spec.etcd.minor == 7 and spec.etcd.sha256 is None


def test_etcd_3_4_only_with_an_explicit_end_of_life_acknowledgement():
    said = refusal(etcd={"version": "3.4.23"})
    assert "hakube:etcd.version: 3.4.23: etcd 3.4 is end of life" in said
    assert "set 3.5.x (e.g. 3.5.33)" in said and "hakube:etcd.allowEndOfLife: true" in said
    assert dev(etcd={"version": "3.4.23", "allowEndOfLife": True}).etcd.minor == 4
    assert re.search(r"3\.8\.0: supported etcd releases are 3\.4\.x, 3\.5\.x, 3\.6\.x, 3\.7\.x",
                     refusal(etcd={"version": "3.8.0"}))


def test_install_reads_the_upgrade_floors_from_the_table():
    assert versions.etcd_upgrade_floors() == "5=32 6=11"


def test_make_versions_prints_the_table():
    out = subprocess.run([sys.executable, "-m", "config.versions"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"{DEFAULT_ETCD_VERSION}" in out.stdout and "(default)" in out.stdout
    assert f"(default {DEFAULT_KUBERNETES_VERSION})" in out.stdout and "calico" in out.stdout


def test_the_readme_shows_the_table_as_it_is():
    assert versions.readme_block() in (ROOT / "README.md").read_text(), \
        "README.md's release table is stale: run python -m config.versions --readme"


def test_make_versions_names_each_source_as_a_reader_would_not_by_this_files_shorthand():
    import re

    from config import versions
    shorthand = re.findall(r"\([A-Z][A-Z0-9_]{2,}\b", versions.table())
    assert not shorthand, shorthand
    assert set(versions.SOURCE_NAMES) <= set(re.findall(r"^- ([A-Z0-9_]+):", versions.__doc__, re.M))
