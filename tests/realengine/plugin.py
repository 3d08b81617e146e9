"""Stand-ins for the three provider plugins the real Pulumi engine loads for
hakube (`pulumi-resource-command`, `-tls`, `-libvirt`): gRPC ResourceProvider
servers, found by the CLI on PATH (tests/realengine/bin).

What is ours and what is Pulumi's: everything the engine does around a
provider is the real CLI's (`make tools` builds it): the steps and their
order, replaces and their order, deletes, unknowns in a preview, parents
and URNs, the state and its secrets. These plugins are the providers' side
only: what Check fills in, what Diff answers, what Create/Update/Delete
return, in preview and for real. The go-provider, terraform-bridge and
provider releases they imitate cannot be built here (the Go module proxy
refuses them: tools/build.py), so each answer below was read in their
source; the citations are to the releases hakube pins (requirements.txt):
pulumi-command v1.2.1 on pulumi-go-provider v1.3.0; pulumi-tls 5.x on
terraform-provider-tls v4.2.1 and the terraform bridge's plugin-framework
path (v3.135.0); pulumi-libvirt v0.5.4 on terraform-provider-libvirt v0.8.1
and the bridge's SDKv2 path (v3.99.0).

Mode `lab` ($HAKUBE_EXECUTOR names a socket, executor.py): Create, Update
and Delete, outside a preview, are acted on by the process serving that
socket (the lab's LabProviders), whose answer is the resource's outputs or the
step's error. Check, Diff and previews stay the plugin's own.

Mode `echo` (no executor): nothing acts. Outputs are made up the way
engine/echo.py makes them (recognisable fake PEMs, a join token that parses),
with a new value at each creation as the real provider's new key or
certificate would have. Creation counts the programs read (a node's machine
id follows its root disk's creations) are kept in $HAKUBE_ECHO_STATE, shared
by the three plugin processes.

    pulumi-resource-<package> <engine address>   (run by the engine)
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import sys
import uuid
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.echo import KEY_MARK, SHARED_MARK, TOKEN_MARK  # noqa: E402
from engine.monitor import unwrap  # noqa: E402
from tests.realengine import executor  # noqa: E402

EXECUTOR = executor.ENV

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SIG = "4dabf18193072939515e22adb298388d"
SECRET = "1b47061264138c4ac30d75fd1eb44270"
ASSET, ARCHIVE = "c44067f5952c0a294b673a41bacd8c17", "0def7320c3a5731c473e5ecbe6d01bc7"
VERSIONS = {"command": "1.2.1", "tls": "5.6.2", "libvirt": "0.5.4"}
Kind = provider_pb2.PropertyDiff.Kind

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
COPY_FILE = "command:remote:CopyFile"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"
DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
NETWORK = "libvirt:index/network:Network"

# terraform-provider-tls v4.2.1: the one argument of each resource that is not
# RequiresReplace (resource_self_signed_cert.go:127-141, resource_locally_signed_cert.go);
# PrivateKey and CertRequest have none (resource_private_key.go:57-92, resource_cert_request.go:43-200)
TLS_IN_PLACE = {SELF_SIGNED: {"earlyRenewalHours"}, LOCALLY_SIGNED: {"earlyRenewalHours"}}
# terraform-provider-libvirt v0.8.1 ForceNew arguments, in Pulumi's names.
# Domain (resource_libvirt_domain.go:46-124,131-161,251-348,408-461): scalars,
# blocks whose ForceNew reaches only their count (SDKv2 helper/schema/schema.go:
# 1225-1228), and blocks whose own fields are ForceNew.
DOMAIN_FORCE_NEW = {"name", "description", "vcpu", "memory", "firmware", "type", "nvram", "coreosIgnition",
                    "fwCfgName", "cmdline"}
DOMAIN_COUNT_FORCE_NEW = {"disks", "filesystems", "graphics", "cpu"}
DOMAIN_FIELDS_FORCE_NEW = {"consoles", "tpm"}
# Volume and CloudInitDisk: every argument (resource_libvirt_volume.go:14-84,
# resource_libvirt_cloud_init.go:12-47). Network (resource_libvirt_network.go:43-294):
# all but mtu, autostart, dns.hosts and dnsmasqOptions.
NETWORK_IN_PLACE = {"mtu", "autostart", "dnsmasqOptions"}


# -- values ---------------------------------------------------------------------

def to_py(struct: struct_pb2.Struct) -> dict:
    return json_format.MessageToDict(struct) if struct is not None else {}


def to_struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def is_secret(v: Any) -> bool:
    return isinstance(v, dict) and v.get(SIG) == SECRET


def reveal(v: Any) -> Any:
    return v["value"] if is_secret(v) else v


def secret(v: Any) -> dict:
    return v if is_secret(v) else {SIG: SECRET, "value": v}


def unknown(v: Any) -> bool:
    return v == UNKNOWN or (is_secret(v) and v.get("value") == UNKNOWN)


def _same(a: Any, b: Any) -> bool:
    """Equal as property values: assets and archives by hash only (sdk
    resource/asset/asset.go:142-161)."""
    a, b = reveal(a), reveal(b)
    if isinstance(a, dict) and isinstance(b, dict) and a.get(SIG) in (ASSET, ARCHIVE) and b.get(SIG) == a.get(SIG):
        return a.get("hash") == b.get("hash") and a.get("hash") is not None
    return a == b and not unknown(b)


def detailed(old: Any, new: Any, path: str, out: dict[str, int]) -> None:
    """The sdk's object diff made a detailed diff (go/common/resource/plugin/
    provider.go:642-708, properties_diff.go): objects by key, arrays element
    by element (a longer or shorter array: ADD/DELETE on the tail), a secret
    as one value, an unknown new value an UPDATE."""
    if is_secret(old) or is_secret(new) or unknown(new):
        if not _same(old, new):
            out[path] = Kind.UPDATE
        return
    if isinstance(old, dict) and isinstance(new, dict) and SIG not in old and SIG not in new:
        for k in sorted(set(old) | set(new)):
            p = f"{path}.{k}" if path else k
            if k not in old:
                out[p] = Kind.ADD
            elif k not in new:
                out[p] = Kind.DELETE
            else:
                detailed(old[k], new[k], p, out)
        return
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            p = f"{path}[{i}]"
            if i >= len(old):
                out[p] = Kind.ADD
            elif i >= len(new):
                out[p] = Kind.DELETE
            else:
                detailed(old[i], new[i], p, out)
        return
    if not _same(old, new):
        out[path] = Kind.UPDATE


def head(path: str) -> str:
    return re.split(r"[.\[]", path, 1)[0]


REPLACE = {Kind.ADD: Kind.ADD_REPLACE, Kind.DELETE: Kind.DELETE_REPLACE, Kind.UPDATE: Kind.UPDATE_REPLACE}


# -- the shared creation counts (echo mode) ---------------------------------------

def count(key: str, bump: bool) -> int:
    """How many times `key` was created (bumped first when `bump`), across
    runs and the three plugin processes."""
    path = Path(os.environ.get("HAKUBE_ECHO_STATE") or "/tmp/hakube-echo-state.json")
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        if bump:
            data[key] = data.get(key, 0) + 1
            path.write_text(json.dumps(data))
        return data.get(key, 0)


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


# -- the providers ------------------------------------------------------------------

class Provider(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self, package: str):
        self.package = package
        self.executor = os.environ.get(EXECUTOR)        # mode `lab` (executor.py), or None: echo

    # configuration
    def GetPluginInfo(self, request, context):  # noqa: N802
        return plugin_pb2.PluginInfo(version=VERSIONS[self.package])

    def GetSchema(self, request, context):  # noqa: N802
        return provider_pb2.GetSchemaResponse(schema="{}")

    def CheckConfig(self, request, context):  # noqa: N802
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request, context):  # noqa: N802
        old, new = to_py(request.old_inputs or request.olds), to_py(request.news)
        diffs = sorted(k for k in set(old) | set(new) if k != "version" and not _same(old.get(k), new.get(k)))
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if diffs else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=diffs)

    def Configure(self, request, context):  # noqa: N802
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=True, acceptResources=False,
                                              acceptOutputs=False)

    def Cancel(self, request, context):  # noqa: N802
        return empty_pb2.Empty()

    def Attach(self, request, context):  # noqa: N802
        return empty_pb2.Empty()

    # resources
    def Check(self, request, context):  # noqa: N802
        news = to_py(request.news)
        if request.type in (COMMAND, COPY):
            # connection's defaults filled in and stored (infer/apply_defaults.go:108-118,
            # remote/connection.go:31-34,54-83); connection is secret (infer/resource.go:1027-1046)
            conn = reveal(news.get("connection"))
            if isinstance(conn, dict):
                conn = {**{"user": "root", "port": 22, "dialErrorLimit": 10, "perDialTimeout": 15}, **conn}
                news["connection"] = secret(conn)
        elif self.package == "libvirt":
            # auto-naming (pulumi-libvirt resources.go:170): a name the program
            # did not give is made and listed in __defaults (bridge schema.go:187,964)
            if request.type in (DOMAIN, VOLUME, CLOUDINIT, NETWORK) and "name" not in news:
                news["name"] = f"{request.name or _name(request.urn)}-{uuid.uuid4().hex[:7]}"
                news["__defaults"] = ["name"]
            else:
                news.setdefault("__defaults", [])
        return provider_pb2.CheckResponse(inputs=to_struct(news))

    def Diff(self, request, context):  # noqa: N802
        olds = to_py(request.olds)
        old_inputs = to_py(request.old_inputs) if request.HasField("old_inputs") else \
            {k: v for k, v in olds.items() if k not in ("stdout", "stderr")}
        news = to_py(request.news)
        if self.package == "command":
            return self._diff_command(request.type, old_inputs, news)
        if self.package == "tls":
            return self._diff_tls(request.type, old_inputs, olds, news)
        return self._diff_libvirt(request.type, old_inputs, news)

    def _diff_command(self, type_, old, new):
        """pulumi-go-provider infer's default diff (infer/resource.go:1132-1253):
        the inputs' object diff, element paths; only a change of the whole
        `triggers` key is the provider's replace (its full path is looked up
        in the schema's replaceOnChanges, :1141-1146, 1228-1231). The SDK's
        replace_on_changes=["triggers[*]"] makes `triggers[i]` a replace in
        the engine (step_generator.go:3311-3402). deleteBeforeReplace never."""
        out: dict[str, int] = {}
        keys = {k for k in set(old) | set(new) if k != "version" and not k.startswith("__")}
        detailed({k: old[k] for k in keys if k in old}, {k: new[k] for k in keys if k in new}, "", out)
        if type_ == COPY_FILE:      # no Update: every change replaces (:1147-1150)
            out = {p: REPLACE.get(k, k) for p, k in out.items()}
        out = {p: (REPLACE.get(k, k) if p == "triggers" else k) for p, k in out.items()}
        return self._answer(out, detailed_diff=True)

    def _diff_tls(self, type_, old, olds, new):
        """The bridge's plugin-framework diff (pkg/pf/tfbridge/provider_diff.go):
        top-level keys, no detailed diff (pulumi-tls sets only the SDKv2
        accurate-preview flag), replaces = RequiresReplace keys that differ
        or are unknown; ModifyPlan's renewal check on every plan
        (common_cert.go:268-312): inside the early renewal window, or
        expired, `readyForRenewal` forces a replace."""
        keys = {k for k in set(old) | set(new) if not k.startswith("__")}
        diffs = sorted(k for k in keys if not _same(old.get(k), new.get(k)))
        replaces = [k for k in diffs if k not in TLS_IN_PLACE.get(type_, set())]
        if type_ in (SELF_SIGNED, LOCALLY_SIGNED) and olds.get("validityEndTime"):
            end = dt.datetime.fromisoformat(str(olds["validityEndTime"]).replace("Z", "+00:00"))
            early = dt.timedelta(hours=float(reveal(new.get("earlyRenewalHours")) or 0))
            if dt.datetime.now(dt.timezone.utc) >= end - early:
                diffs = sorted({*diffs, "readyForRenewal"})
                replaces = sorted({*replaces, "readyForRenewal"})
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if diffs else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=diffs, replaces=replaces, deleteBeforeReplace=False, hasDetailedDiff=False)

    def _diff_libvirt(self, type_, old, new):
        """The bridge's SDKv2 diff (pkg/tfbridge/diff.go:243-260, provider.go:
        1213-1293): a detailed diff with *_REPLACE on ForceNew paths, replaces
        their head keys; a block's ForceNew reaches only its count, so a
        disk's volume changing with the same number of disks is an update.
        deleteBeforeReplace when the program gave the name (not in
        __defaults: schema.go:197-250, provider.go:1247-1248)."""
        out: dict[str, int] = {}
        keys = {k for k in set(old) | set(new) if not k.startswith("__")}
        detailed({k: old[k] for k in keys if k in old}, {k: new[k] for k in keys if k in new}, "", out)
        marked = {}
        for p, k in out.items():
            top = head(p)
            if type_ in (VOLUME, CLOUDINIT):
                force = True
            elif type_ == DOMAIN:
                force = top in DOMAIN_FORCE_NEW or top in DOMAIN_FIELDS_FORCE_NEW or (
                    top in DOMAIN_COUNT_FORCE_NEW and len(old.get(top) or []) != len(new.get(top) or []))
            elif type_ == NETWORK:
                force = top not in NETWORK_IN_PLACE and not p.startswith("dns.hosts")
            else:
                force = False
            marked[p] = REPLACE.get(k, k) if force else k
        answer = self._answer(marked, detailed_diff=True)
        if answer.replaces and "name" not in (new.get("__defaults") or []):
            answer.deleteBeforeReplace = True
        return answer

    @staticmethod
    def _answer(out: dict[str, int], detailed_diff: bool) -> provider_pb2.DiffResponse:
        diffs = sorted({head(p) for p in out})
        replaces = sorted({head(p) for p, k in out.items() if k in REPLACE.values()})
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if out else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=diffs, replaces=replaces, deleteBeforeReplace=False, hasDetailedDiff=detailed_diff,
            detailedDiff={p: provider_pb2.PropertyDiff(kind=k, inputDiff=True) for p, k in out.items()})

    def _act(self, context, op: str, type_: str, urn: str, inputs: dict, rid: str = "",
             olds: dict | None = None) -> tuple[str, dict]:
        """Mode `lab`: the executor acts and answers (executor.py): the id,
        and the outputs, secret where the input of that name was. Never in
        a preview: nothing acts in a preview."""
        try:
            answer = executor.call(self.executor, {"op": op, "type": type_, "urn": urn, "id": rid,
                                                   "inputs": unwrap(inputs), "olds": unwrap(olds or {})})
        except executor.ExecutorError as err:
            context.abort(grpc.StatusCode.UNKNOWN, str(err))
        outs = {k: secret(v) if is_secret(inputs.get(k)) else v for k, v in (answer.get("outputs") or {}).items()
                if k != "id"}                    # the id is the response's own field
        return answer.get("id") or rid, outs

    def Create(self, request, context):  # noqa: N802
        inputs = to_py(request.properties)
        if self.executor and not request.preview:
            rid, outs = self._act(context, "create", request.type, request.urn, inputs)
            return provider_pb2.CreateResponse(id=rid, properties=to_struct(outs))
        outs = self._outputs(request.type, request.urn, inputs, preview=request.preview)
        if request.preview:
            rid = "" if self.package != "command" or request.type != COMMAND else f"{_name(request.urn)}{uuid.uuid4().hex[:8]}"
        else:
            rid = outs.pop("__id", None) or f"{_name(request.urn)}-{uuid.uuid4().hex[:8]}"
        outs.pop("__id", None)
        return provider_pb2.CreateResponse(id=rid, properties=to_struct(outs))

    def Update(self, request, context):  # noqa: N802
        olds, news = to_py(request.olds), to_py(request.news)
        if self.executor and not request.preview:
            _, outs = self._act(context, "update", request.type, request.urn, news, request.id, olds)
            return provider_pb2.UpdateResponse(properties=to_struct(outs))
        if request.type == COMMAND:
            # new inputs and the old stdout/stderr (commandController.go:70-73);
            # in a preview every output depends on every input (resource.go:565-587,
            # 743-752): any input changed or unknown makes them unknown
            outs = {**news, "stdout": olds.get("stdout", ""), "stderr": olds.get("stderr", "")}
            old_inputs = to_py(request.old_inputs) if request.HasField("old_inputs") else olds
            changed = any(not _same(old_inputs.get(k), v) for k, v in news.items())
            if request.preview and changed:
                outs.update(stdout=UNKNOWN, stderr=UNKNOWN)
            elif not request.preview:
                outs.update(self._command_stdout(_name(request.urn), update=True) or {})
        else:
            outs = {**olds, **news}
        return provider_pb2.UpdateResponse(properties=to_struct(outs))

    def Delete(self, request, context):  # noqa: N802
        if self.executor:
            # the old outputs: a Command's hold its inputs (its delete script, its connection)
            self._act(context, "delete", request.type, request.urn, to_py(request.properties), request.id)
        return empty_pb2.Empty()

    def Read(self, request, context):  # noqa: N802
        return provider_pb2.ReadResponse(id=request.id, properties=request.properties, inputs=request.inputs)

    # made-up outputs ----------------------------------------------------------
    def _command_stdout(self, name: str, update: bool = False) -> dict | None:
        if "-join-token-" in name:
            # each run of the script mints a new secret half
            n = count(f"token:{name}", True)
            return {"stdout": json.dumps({"token": f"{TOKEN_MARK}.{name}-{n}", "caCertHash": "sha256:00"})}
        if name.endswith("-export-shared-certs"):
            return {"stdout": "".join(f"-----BEGIN {kind}-----\n{SHARED_MARK}-{i}\n-----END {kind}-----\n"
                                      for i, kind in enumerate(("CERTIFICATE", "PRIVATE KEY", "PRIVATE KEY",
                                                                "PUBLIC KEY", "CERTIFICATE", "PRIVATE KEY")))}
        if name.endswith("-helpers") and not update:
            # the machine id kept on the node's root disk: new exactly when that disk was created anew
            root = name.removesuffix("-helpers") + "-root"
            return {"stdout": f"{root}-disk-{count(f'created:{root}', False)}"}
        return None

    def _outputs(self, type_: str, urn: str, inputs: dict, preview: bool) -> dict:
        """A creation's outputs (made up; unknown where a preview cannot know them)."""
        name = _name(urn)
        outs = dict(inputs)
        if not preview:
            count(f"created:{name}", True)
        fresh = uuid.uuid4().hex[:8]
        if type_ == COMMAND:
            # stdout/stderr unknown in a create's preview (resource.go:545-563,632-642)
            if preview:
                return {**outs, "stdout": UNKNOWN, "stderr": UNKNOWN}
            return {**outs, "stdout": "", "stderr": "", **(self._command_stdout(name) or {})}
        if type_ in (COPY, COPY_FILE):
            return outs
        if type_ == PRIVATE_KEY:
            keys = ("privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8", "publicKeyPem",
                    "publicKeyOpenssh", "publicKeyFingerprintMd5", "publicKeyFingerprintSha256")
            if preview:
                return {**outs, **{k: UNKNOWN for k in keys}}
            return {**outs,
                    "privateKeyPem": f"-----BEGIN PRIVATE KEY-----\n{KEY_MARK}-{name}-{fresh}\n-----END PRIVATE KEY-----\n",
                    "privateKeyOpenssh": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_MARK}-{name}-{fresh}\n"
                                         "-----END OPENSSH PRIVATE KEY-----\n",
                    "privateKeyPemPkcs8": f"-----BEGIN PRIVATE KEY-----\n{KEY_MARK}-{name}-{fresh}\n-----END PRIVATE KEY-----\n",
                    "publicKeyPem": f"-----BEGIN PUBLIC KEY-----\n{name}-{fresh}\n-----END PUBLIC KEY-----\n",
                    "publicKeyOpenssh": f"ssh-ed25519 AAAA{name}{fresh}\n",
                    "publicKeyFingerprintMd5": fresh, "publicKeyFingerprintSha256": fresh}
        if type_ in (SELF_SIGNED, LOCALLY_SIGNED):
            hours = float(reveal(inputs.get("validityPeriodHours")) or 0)
            early = float(reveal(inputs.get("earlyRenewalHours")) or 0)
            ready = hours == 0 or early >= hours        # attribute_plan_modifier_bool/default_value.go:33-63
            if preview:
                return {**outs, "certPem": UNKNOWN, "validityStartTime": UNKNOWN, "validityEndTime": UNKNOWN,
                        "readyForRenewal": ready}
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            return {**outs, "certPem": f"-----BEGIN CERTIFICATE-----\n{name}-{fresh}\n-----END CERTIFICATE-----\n",
                    "validityStartTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "validityEndTime": (now + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "readyForRenewal": ready}
        if type_ == CERT_REQUEST:
            if preview:
                return {**outs, "certRequestPem": UNKNOWN}
            return {**outs, "certRequestPem": f"-----BEGIN CERTIFICATE REQUEST-----\n{name}-{fresh}\n"
                                              "-----END CERTIFICATE REQUEST-----\n"}
        if type_ == VOLUME:
            # a volume's id is its path (the same after a re-creation)
            return {**outs, "__id": f"/var/lib/libvirt/images/{reveal(inputs.get('name'))}"}
        return outs


def main(argv: list[str]) -> int:
    package = argv[1]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32),
                         options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(Provider(package), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
