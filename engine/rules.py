"""What each provider's Diff says about a change of inputs: the per-type rules
of the real engine and providers hakube pins, each citing its source.

The engine asks the provider for a diff of the old inputs (from state) and
the new ones (from the program); the provider answers with the keys that
changed and those of them that force a replacement
(pulumi/pulumi `pkg/resource/deploy/step_generator.go`, `diffResource`), and
the engine adds the resource's `replaceOnChanges` option on top
(`applyReplaceOnChanges`, same file).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, Mapping

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
NETWORK = "libvirt:index/network:Network"
LIBVIRT_PROVIDER = "pulumi:providers:libvirt"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"

# pulumi/pulumi-command provider/pkg/provider/common/inputs.go (v1.2.1):
# `Triggers *[]any pulumi:"triggers,optional" provider:"replaceOnChanges"`;
# no other input of a Command or CopyToRemote carries the tag, so every other
# change is an update (pulumi-go-provider v1.3.0 infer's default Diff). The
# Python SDK also registers every Command with replace_on_changes=["triggers[*]"]
# (pulumi_command/remote/command.py), which says the same again.
COMMAND_REPLACE_KEYS = frozenset({"triggers"})

# terraform-provider-libvirt v0.8.1, libvirt/resource_libvirt_*.go: the
# top-level schema fields with ForceNew: true on themselves or on a nested
# field (read by a script from the v0.8.1 tag), in the bridge's camelCase.
# A Domain's `cloudinit` is not among them: a changed disk is swapped into the
# running domain (cloud-init in the guest does not re-run); a Network's
# dns.hosts are updated in place.
LIBVIRT_REPLACE_KEYS = {
    VOLUME: frozenset({"name", "pool", "source", "size", "format", "baseVolumeId", "baseVolumePool",
                       "baseVolumeName", "xml"}),
    CLOUDINIT: frozenset({"name", "pool", "userData", "metaData", "networkConfig"}),
    DOMAIN: frozenset({"name", "description", "vcpu", "memory", "cpu", "disks", "filesystems", "firmware",
                       "nvram", "type", "cmdlines", "consoles", "coreosIgnition", "fwCfgName", "graphics",
                       "tpm", "xml"}),
    # dns: only its forwarders and srvs force a replacement; hakube sets hosts only.
    NETWORK: frozenset({"name", "domain", "mode", "bridge", "addresses", "dhcp", "routes", "xml"}),
}

TLS_TYPES = frozenset({PRIVATE_KEY, SELF_SIGNED, CERT_REQUEST, LOCALLY_SIGNED})


ABSENT = object()          # an input the old state did not have


@dataclass(frozen=True)
class Diff:
    changed: tuple[str, ...]              # top-level input keys whose values differ
    replace_keys: tuple[str, ...]         # those of them that force a replacement
    delete_before_replace: bool = False
    reason: str = ""

    @property
    def op(self) -> str:
        if not self.changed and not self.replace_keys:
            return "same"
        return "replace" if self.replace_keys else "update"


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))


def _option_replace_keys(changed: tuple[str, ...], replace_on_changes: list[str]) -> set[str]:
    """`replaceOnChanges` paths (`triggers[*]`, `a.b`) cover a changed top-level
    key when their first element names it (applyReplaceOnChanges)."""
    heads = {p.split("[", 1)[0].split(".", 1)[0] for p in replace_on_changes}
    return {k for k in changed if k in heads or "*" in heads}


def _renewal_due(outputs: Mapping[str, Any], inputs: Mapping[str, Any], now: dt.datetime) -> bool:
    """hashicorp/terraform-provider-tls internal/provider/common_cert.go
    (`modifyPlanIfCertificateReadyForRenewal`): a certificate whose
    `validity_end_time - early_renewal_hours` has passed plans
    `ready_for_renewal = true`, which requires a replacement."""
    end = outputs.get("validityEndTime")
    if not end:
        return False
    end_time = dt.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    early = dt.timedelta(hours=int(inputs.get("earlyRenewalHours") or 0))
    return now >= end_time - early


def diff(type_: str, old_inputs: Mapping[str, Any], new_inputs: Mapping[str, Any],
         old_outputs: Mapping[str, Any], *, custom: bool = True, replace_on_changes: list[str] | None = None,
         delete_before_replace: bool = False, now: Callable[[], dt.datetime] | None = None) -> Diff:
    """The provider's answer, with the engine's `replaceOnChanges` applied."""
    changed = changed_keys(old_inputs, new_inputs)
    if not custom:
        # Components have no provider: "diffs exist" when inputs differ, nothing runs.
        return Diff(changed, ())
    replace: set[str] = set(_option_replace_keys(changed, replace_on_changes or []))
    dbr = delete_before_replace
    reason = ""
    if type_ in (COMMAND, COPY):
        replace |= COMMAND_REPLACE_KEYS & set(changed)
    elif type_ in TLS_TYPES:
        # terraform-provider-tls: every argument of these resources is
        # RequiresReplace (a new key, request or certificate).
        replace |= set(changed)
        if type_ in (SELF_SIGNED, LOCALLY_SIGNED) and not replace and \
                _renewal_due(old_outputs, new_inputs, (now or _utcnow)()):
            replace.add("readyForRenewal")
            reason = "inside its early renewal window: re-issued"
    elif type_ in LIBVIRT_REPLACE_KEYS:
        replace |= LIBVIRT_REPLACE_KEYS[type_] & set(changed)
        # pulumi-terraform-bridge: a replacement of a resource whose name the
        # program set (not auto-named) must delete before it creates, or the
        # two would collide on the name; hakube names every libvirt resource.
        if replace and new_inputs.get("name"):
            dbr = True
    elif type_ == LIBVIRT_PROVIDER:
        pass                       # provider config: an update of the provider, nothing on the host
    elif type_.startswith("pulumi:providers:"):
        pass
    else:
        raise NotImplementedError(f"engine: no diff rules for resource type {type_}")
    return Diff(changed, tuple(sorted(replace)), dbr and bool(replace), reason)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
