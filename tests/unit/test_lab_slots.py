"""The lab's slots (tests/lab/hosts.py Slot, lab.py moved): labs that run at
once share nothing a lab creates on this machine, and each stack config
names only its own slot's addresses."""
import json

import pytest

from config.stackfile import raw_from_stack_file
from tests.harness import ROOT
from tests.lab.hosts import SLOTS, Slot, _ifname
from tests.lab.lab import STACK, moved


def lab_raw() -> dict:
    return raw_from_stack_file(ROOT / f"Pulumi.{STACK}.yaml")


def test_slot_zero_is_the_stack_file_as_written():
    assert moved(lab_raw(), Slot(0)) == lab_raw()


def test_a_slot_moves_every_address_of_the_stack_files_24_and_nothing_else():
    raw = lab_raw()
    raw["etcd"]["backup"]["offsite"] = {"remote": {"host": "10.231.4.250"}, "knownHosts": "10.231.4.250 ssh-ed25519 AAAA"}
    raw["kubernetes"]["podSubnet"] = "10.244.0.0/16"
    raw["note"] = "110.231.4.7 and 10.231.40.1 are not the lab's"
    out = moved(raw, Slot(2))
    assert out["network"]["cidr"] == "10.231.6.0/24"
    assert out["etcd"]["downloadUrl"] == "http://10.231.6.1:8079/etcd"
    assert out["kubernetes"]["packageRepository"] == "http://10.231.6.1:8079/kubernetes"
    assert out["kubernetes"]["cni"]["manifestUrl"] == "http://10.231.6.1:8079/cni/kube-flannel.yml"
    assert out["monitoring"]["sources"] == ["10.231.6.1"]
    assert out["etcd"]["backup"]["offsite"] == {"remote": {"host": "10.231.6.250"},
                                                "knownHosts": "10.231.6.250 ssh-ed25519 AAAA"}
    assert out["kubernetes"]["podSubnet"] == "10.244.0.0/16"
    assert out["note"] == raw["note"]
    assert "10.231.4." not in json.dumps(out).replace(raw["note"], "")


def test_a_stack_file_whose_network_is_not_a_24_is_refused_by_name():
    raw = lab_raw()
    raw["network"]["cidr"] = "10.231.0.0/16"
    with pytest.raises(RuntimeError, match=r"network.cidr is 10.231.0.0/16"):
        moved(raw, Slot(1))


def test_slots_share_no_name_or_path():
    slots = [Slot(i) for i in range(SLOTS)]
    for attr in ("bridge", "link_prefixes", "hosts_dir", "disks_dir", "ssh_dir", "cgroup"):
        assert len({str(getattr(s, attr)) for s in slots}) == SLOTS, attr
    name = "hakube-lab-master-02"           # the same domain in every slot's lab
    links = {_ifname(p, name) for s in slots for p in s.link_prefixes}
    assert len(links) == 2 * SLOTS and all(len(link) <= 15 for link in links)
    assert all(s.owns_link(_ifname(s.link_prefixes[0], name)) for s in slots)
    assert not slots[1].owns_link(_ifname(slots[0].link_prefixes[0], name))
    assert not slots[0].owns_link(slots[1].bridge)
    with pytest.raises(ValueError, match="slots 0 to"):
        Slot(SLOTS)
