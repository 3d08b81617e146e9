"""Kubernetes' plans, plain values (steps/plan.py, no Pulumi): the control
planes and the workers up to kubeadm and through it, the upgrade, the
seed's checks."""
from __future__ import annotations

import base64
import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Sequence

from config.spec import Spec

from .. import steps
from ..etcd.plan import Face
from ..steps.plan import READY, Derived, Step, check, digest
from . import payloads as payload

HERE = Path(__file__).parent
# marks a node drained by hakube for an upgrade (uncordoned after it; one
# cordoned by hand stays cordoned)
DRAINED_MARK = "hakube.io/upgrade-drained"
DRAIN_TIMEOUT = 300
JOINED = "every join done"          # outside the upgrade plan: what it starts after


def packages(node: str) -> str:
    """Outside the upgrade plan: the node's kube-packages step."""
    return f"kube-packages of {node}"


def upgrade_plan(name: str, spec: Spec) -> list[Step]:
    """A change of `kubernetes.version` on a running cluster, as kubeadm's
    upgrade procedure, one node at a time: the first control plane
    (`kubeadm upgrade apply`), each other control plane (`kubeadm upgrade
    node`), then each worker drained (on the first control plane), upgraded,
    uncordoned. The version is in every step's script text, so a change is
    an update of each, in this chain's order; on create (a new node, a new
    cluster) each finds its node at the version and does nothing. The first
    step refuses a downgrade or a skipped minor before anything changes."""
    cps, workers = spec.topology.control_planes, spec.topology.workers
    first = cps[0].name
    common = {"K8S_VERSION": spec.kubernetes.version, "DRAINED_MARK": DRAINED_MARK,
              "DRAIN_TIMEOUT": DRAIN_TIMEOUT,
              "APISERVER_MANIFEST": "/etc/kubernetes/manifests/kube-apiserver.yaml"}
    out: list[Step] = []
    previous: tuple[str, ...] = (JOINED,)
    for i, n in enumerate(cps):
        out.append(Step(f"{name}-{n.name}-upgrade", n.name, HERE / "upgrade.sh",
                        {**common, "ROLE": "first" if i == 0 else "control-plane"},
                        after=(*previous, packages(n.name))))
        previous = (out[-1].name,)
    for n in workers:
        values = {**common, "NODE": n.name}
        drain = Step(f"{name}-{first}-upgrade-drain-{n.name}", first, HERE / "upgrade-drain.sh", values,
                     after=previous)
        upgraded = Step(f"{name}-{n.name}-upgrade", n.name, HERE / "upgrade.sh", {**common, "ROLE": "worker"},
                        after=(drain.name, packages(n.name)))
        uncordon = Step(f"{name}-{first}-upgrade-uncordon-{n.name}", first, HERE / "upgrade-uncordon.sh",
                        values, after=(upgraded.name,))
        out += [drain, upgraded, uncordon]
        previous = (uncordon.name,)
    return check(out, (JOINED, *(packages(n.name) for n in (*cps, *workers))))


# outside the checks' plan: what they start after
WORKERS_JOINED = "the last join"
CNI = "the CNI"
UPGRADED = "the upgrade done"


def checks_plan(name: str, spec: Spec) -> list[Step]:
    """The seed's verification, as gates after bootstrap: every node Ready,
    no etcd pod, every control plane Ready, and a namespace written through
    the API found by etcdctl on an etcd member (converge runs them again)."""
    topo = spec.topology
    first, member = topo.control_planes[0].name, topo.etcd[0].name
    # By name, not by count: a node the stack drops is still listed by the
    # API until its VM goes (deletes come last), and 3 Ready != 2 wanted
    # would fail every run of a shrink.
    ready = Step(f"{name}-{first}-nodes-ready", first, HERE / "nodes-ready.sh",
                 {"NODES": " ".join(n.name for n in (*topo.control_planes, *topo.workers))},
                 after=(WORKERS_JOINED, CNI, UPGRADED), converge=True)
    encryption = spec.kubernetes.encryption_provider if spec.kubernetes.encryption_enabled else ""
    probe = {"CHECK_NAMESPACE": payload.CHECK_NAMESPACE, "CHECK_SECRET": payload.CHECK_SECRET,
             "CHECK_PROBE": payload.CHECK_PROBE, "ENCRYPTION": encryption}
    verify = Step(f"{name}-{first}-no-local-etcd", first, HERE / "verify.sh",
                  {"CONTROL_PLANES": " ".join(n.name for n in topo.control_planes), **probe},
                  after=(ready.name,), converge=True)
    registry = Step(f"{name}-{member}-registry", member, HERE / "registry.sh",
                    {**probe, "PKI_DIR": Face.member_pki_dir, "ETCD_ENDPOINTS": ",".join(topo.etcd_client_endpoints)},
                    libs=Face.libs, after=(verify.name,), converge=True)
    return check([ready, verify, registry], (WORKERS_JOINED, CNI, UPGRADED))


# --- the control planes and the workers ------------------------------------------

# the outputs the plans' Derived values read (realize's `sources`)
ETCD_CA, CLIENT_CERT, CLIENT_KEY = "etcd-ca", "etcd-client-cert", "etcd-client-key"
CLIENT_NOT_AFTER = "etcd-client-not-after"
ENCRYPTION_SEED = "encryption-seed"      # the random key every encryption key is derived from, in state
# what they run after that is not theirs (realize's `outside`)
API_READY = "the VIP answers"
CONTROL_PLANES_JOINED = "the last control plane's join"
# kubeadm's own certificates on a control plane (one year; `kubeadm certs renew`)
KUBEADM_CERTS = ("/etc/kubernetes/pki/*.crt", "/etc/kubernetes/pki/etcd/*.crt")
# (path, mode, owner, group) of the client certs a control plane gets, in the
# order of the PEM bundle: CA, apiserver-etcd-client cert, its key.
KUBEADM_ETCD_FILES = (
    (Face.ca, "0644", "root", "root"),
    (Face.cert, "0644", "root", "root"),
    (Face.key, "0600", "root", "root"),
)
PRACTICE_FILES = tuple((f"{payload.PRACTICE_CERTS_DIR}/{name}", mode, "root", "root")
                       for name, mode in (("ca.pem", "0644"), ("client.crt", "0644"), ("client.key", "0600")))
RENEW_JOB = "hakube-kubeadm-certs-renew"


def machine(node: str) -> str:
    """A source: the node's machine id (a rebuilt node gets a new token id)."""
    return f"machine of {node}"


def cgroup_values(spec: Spec) -> dict:
    """What kubeadm_cgroup_args reads (init and join): nothing unless the
    stack allows cgroup v1, so other stacks' steps keep their text."""
    if not spec.kubernetes.allow_cgroup_v1:
        return {}
    return {"ALLOW_CGROUP_V1": 1, "CGROUP_V1_PREFLIGHT": payload.CGROUP_V1_PREFLIGHT}


def encryption_keys(names: Sequence[str], seed_pem: str) -> str:
    """stdin of the encryption steps: "name secret" per line, the active key
    first; each secret 32 bytes (secretbox's size, AES-256 for aescbc)
    derived from the stack's random seed key and the name, so a name keeps
    its secret from run to run and a new name gets a new one."""
    return "".join(f"{name} " + base64.b64encode(hashlib.sha256(
        b"hakube encryption key\0" + name.encode() + b"\0" + seed_pem.encode()).digest()).decode() + "\n"
        for name in names)


def cert_renewal(spec: Spec, index: int) -> tuple[dict, str]:
    """The values of a control plane's kubeadm-certs-renewal job step
    (steps.job) and the script its timer runs: the `index`-th control plane
    waits index x 10 minutes after the timer fires, and restarts nothing
    while another one's apiserver is not ready."""
    k8s, topo = spec.kubernetes, spec.topology
    values = steps.job(RENEW_JOB, "kubeadm's certificates on this control plane renewed before they expire",
                       k8s.renewal_calendar, k8s.renewal_enabled, "hakube:kubernetes.certRenewal",
                       "hakube:kubernetes.certRenewal.enabled is false", HERE / f"{RENEW_JOB}.service")
    me = topo.control_planes[index]
    return values, steps.job_body(HERE / "kubeadm-certs-renew.sh", {
        "RENEW_DAYS": k8s.renewal_days, "DELAY_SECONDS": 600 * index, "API_PORT": k8s.api_port,
        "PEERS": " ".join(str(n.ip) for n in topo.control_planes if n.name != me.name),
        "ADMIN_USER": spec.ssh.user})


def prepare_node(name: str, spec: Spec, node: str) -> list[Step]:
    """kernel -> containerd -> kubeadm/kubelet/kubectl on one node."""
    k8s = spec.kubernetes
    own = lambda step: f"{name}-{node}-{step}"  # noqa: E731
    return [
        Step(own("kernel"), node, HERE / "kernel.sh", {}, after=(READY,)),
        Step(own("containerd"), node, HERE / "containerd.sh",
             {"CRI_SOCKET": payload.CRI_SOCKET, "PAUSE_IMAGE": payload.pause_image(spec)}, after=(own("kernel"),)),
        Step(own("kube-packages"), node, HERE / "packages.sh", {
            "K8S_VERSION": k8s.version, "K8S_MINOR": f"1.{k8s.minor}", "K8S_PACKAGE_REPO": k8s.package_repo},
            after=(own("containerd"),)),
    ]


def _token_id(stack: str, node: str, machine_id: str) -> str:
    return digest(stack, node, machine_id)[:6]


def _join_config(spec: Spec, node: str, control_plane: bool, token: str) -> str:
    return payload.join_config_yaml(spec, spec.topology.node(node), json.loads(token), control_plane)


def join(name: str, spec: Spec, node: str, *, control_plane: bool, after: Sequence[str],
         shared_certs: str | None = None) -> list[Step]:
    """`node` joins: a bootstrap token minted on the first control plane,
    the join with it, the token deleted; after `after` (chaining joins
    makes them one at a time). Under the engine a failed join leaves the
    token step as it was ("same" next run) and runs the join again: the
    token has no expiry until its join-done step deletes it, so a retry
    however late still holds a valid one. Its delete: a node that leaves
    the stack before it joined leaves no token behind. The token's id
    follows the joiner's machine: a rebuilt node gets a new one. Then the
    steps whose deletes take the node out of the cluster (leave); the
    join-done step last."""
    first = spec.topology.control_planes[0].name
    token_id = Derived(machine(node), partial(_token_id, spec.stack, node), secret=False)
    done = {"TOKEN_ID": token_id, "JOINER": node}
    token = Step(f"{name}-{first}-join-token-{node}", first, HERE / "join-token.sh",
                 {"TOKEN_ID": token_id, "JOINER": node, "CA_CERT": f"{payload.PKI}/ca.crt"},
                 delete=HERE / "join-done.sh", delete_values=done, secret=True, secret_stdout=True,
                 after=tuple(after))
    keep = [f[0] for f in KUBEADM_ETCD_FILES] + [f[0] for f in payload.SHARED_CERTS] if control_plane else []
    joined = Step(f"{name}-{node}-kubeadm-join", node, HERE / "join.sh", {
        "CONTROL_PLANE": int(control_plane), "ADMIN_USER": spec.ssh.user, "KEEP_FILES": " ".join(keep),
        **cgroup_values(spec)}, stdin=Derived(token.name, partial(_join_config, spec, node, control_plane)),
        secret=True, after=(token.name, *((shared_certs,) if shared_certs else ()), *after))
    return [token, joined, *leave(name, spec, node, joined.name),
            Step(f"{name}-{first}-join-done-{node}", first, HERE / "join-done.sh", done, after=(joined.name,))]


def leave(name: str, spec: Spec, node: str, joined: str) -> list[Step]:
    """What takes a joined node out of the cluster when the stack drops it,
    as the deletes of three steps that do nothing on create: the engine
    deletes dependents first, so the order is drain (on the first control
    plane) -> kubeadm reset (on the node: its kubelet would register it
    again) -> delete the Node from the API (first control plane); all of it
    after every create and update of the run (HAProxy has dropped a leaving
    control plane by then) and before the node's VM, which they depend on.
    Steps of their own, never replaced: a replaced step runs its delete."""
    first = spec.topology.control_planes[0]
    api = {"NODE": node, "API_ADDRESS": str(first.ip), "API_PORT": spec.kubernetes.api_port}
    forget = Step(f"{name}-{first.name}-forget-{node}", first.name, None, delete=HERE / "leave-forget.sh",
                  delete_values=api, gate=True, after=(joined,))
    reset = Step(f"{name}-{node}-reset", node, None, delete=HERE / "leave-reset.sh", gate=True,
                 after=(joined, forget.name))
    drain = f"{name}-{first.name}-drain-{node}"
    return [forget, reset, Step(drain, first.name, None, delete=HERE / "leave-drain.sh", gate=True,
                                delete_values={**api, "DRAIN_TIMEOUT": DRAIN_TIMEOUT, "DRAIN_STEP": drain},
                                after=(reset.name,))]


def _etcd_bundle(practice: bool, files: Sequence[tuple], *pems: str) -> str:
    return steps.pem_bundle(list(pems) * (2 if practice else 1), [f[0] for f in files])


def _client_payload(servers: str, *pems: str) -> str:
    return digest(*pems, servers)


def _same(text: str) -> str:
    return text


def etcd_values(spec: Spec) -> dict:
    return {"ETCD_ENDPOINTS": ",".join(spec.topology.etcd_client_endpoints), "ETCD_CA": Face.ca,
            "ETCD_CERT": Face.cert, "ETCD_KEY": Face.key}


def encryption_stdin(spec: Spec) -> Derived:
    """The encryption steps' stdin: every listed key, from the seed in state (secret)."""
    return Derived(ENCRYPTION_SEED, partial(encryption_keys, spec.kubernetes.encryption_keys))


def encryption_values(spec: Spec) -> dict:
    k8s = spec.kubernetes
    return {"ENC_CONFIG": payload.ENC_CONFIG, "ENC_PROVIDER": k8s.encryption_provider,
            "KEYS": " ".join(k8s.encryption_keys), "API_PORT": k8s.api_port,
            "APISERVER_MANIFEST": payload.APISERVER_MANIFEST}


def encrypts(spec: Spec) -> bool:
    return spec.kubernetes.encryption_enabled and spec.kubernetes.bootstrap


def _control_plane_node(name: str, spec: Spec, node: str) -> list[Step]:
    """One control plane's steps before kubeadm: packages, etcdctl, the etcd
    client files and their checks, the etcd preflight, the encryption config
    and the audit policy."""
    k8s, practice = spec.kubernetes, not spec.kubernetes.bootstrap
    files = KUBEADM_ETCD_FILES + (PRACTICE_FILES if practice else ())
    own = lambda step: f"{name}-{node}-{step}"  # noqa: E731
    out = prepare_node(name, spec, node) + [
        # after the members' installs: their upgrade check refuses a bad
        # version before anything (this download included) changes
        Face.of(spec).etcdctl_step(own("etcdctl"), node, after=(READY, Face.INSTALLED)),
        Step(own("etcd-certs"), node, steps.PEM_FILES, {"PEM_FILES": steps.pem_files_spec(files)},
             stdin=Derived((ETCD_CA, CLIENT_CERT, CLIENT_KEY), partial(_etcd_bundle, practice, files)),
             secret=True, after=(READY,)),
    ]
    # hakube's etcd client files and kubeadm's own certificates checked
    # daily against their expiry (fails loudly, says how)
    values, check_script = steps.cert_check(spec.stack, spec.pki.check_days, spec.pki.check_calendar,
                                            [f[0] for f in files if not f[0].endswith(".key")], KUBEADM_CERTS)
    out.append(Step(own("cert-check"), node, steps.JOB, values, stdin=check_script, after=(own("etcd-certs"),)))
    if not practice:
        values, renew_script = cert_renewal(spec, [n.name for n in spec.topology.control_planes].index(node))
        out.append(Step(own("kubeadm-certs-renewal"), node, steps.JOB, values, stdin=renew_script,
                        after=(own("etcd-certs"),)))
    # after the etcd restart chain: never mid-way through a rolling restart
    out.append(Step(own("etcd-preflight"), node, HERE / "preflight.sh", etcd_values(spec),
                    after=(own("etcdctl"), own("etcd-certs"), Face.HEALTHY, Face.RESTARTED)))
    if encrypts(spec):
        # in place before kubeadm starts an apiserver that reads it
        out.append(Step(own("encryption-config"), node, HERE / "encryption.sh",
                        {**encryption_values(spec), "STAGE": "initial"}, stdin=encryption_stdin(spec), secret=True,
                        after=(READY,)))
    if k8s.audit_enabled and not practice:
        out.append(Step(own("audit-policy"), node, steps.FILE, {
            "DEST": payload.AUDIT_POLICY, "MODE": "0600", "OWNER": "root:root"},
            stdin=payload.audit_policy_yaml(), after=(READY,)))
    return out


def ready_for_kubeadm(name: str, spec: Spec, node: str) -> tuple[str, ...]:
    """What kubeadm on a control plane waits for: its packages, the etcd
    preflight, the encryption config and audit policy."""
    own = lambda step: f"{name}-{node}-{step}"  # noqa: E731
    return (own("kernel"), own("containerd"), own("kube-packages"), own("etcd-preflight"),
            *((own("encryption-config"),) if encrypts(spec) else ()),
            *((own("audit-policy"),) if spec.kubernetes.audit_enabled and spec.kubernetes.bootstrap else ()))


def control_plane_plan(name: str, spec: Spec) -> list[Step]:
    """Each control plane prepared; kubeadm's config on the first (practice
    mode stops here: the learner runs kubeadm). Then kubeadm init on the
    first, the CNI, the admin kubeconfig, kubeadm's shared certificates
    exported, each other control plane joining one at a time; the
    apiservers restarted one at a time for a new etcd client certificate or
    membership; an encryption key rotation; kubeadm's record of its
    configuration uploaded."""
    cps = [n.name for n in spec.topology.control_planes]
    first, practice = cps[0], not spec.kubernetes.bootstrap
    out = [s for n in cps for s in _control_plane_node(name, spec, n)]
    dests = payload.KUBEADM_CONFIG + (f" {payload.PRACTICE_CONFIG}" if practice else "")
    out.append(Step(f"{name}-{first}-kubeadm-config", first, steps.FILE, {
        "DEST": dests, "MODE": "0600", "OWNER": "root:root"},
        stdin=payload.init_config_yaml(spec, spec.topology.node(first)), after=(READY,)))
    outside = (API_READY, Face.INSTALLED, Face.HEALTHY, Face.RESTARTED)
    if practice:
        return check(out, outside)
    out += _bootstrap(name, spec, cps)
    # the last join, or the init
    previous = f"{name}-{first}-join-done-{cps[-1]}" if len(cps) > 1 else f"{name}-{first}-kubeadm-init"
    out += _apiserver_restarts(name, spec, cps, previous)
    previous = out[-1].name
    if encrypts(spec):
        out += _encryption_rotation(name, spec, cps, previous)
        previous = out[-1].name
    # kubeadm's own record of the ClusterConfiguration (kube-system/kubeadm-config),
    # which later joins and `kubeadm upgrade` read: the etcd endpoints follow.
    out.append(Step(f"{name}-{first}-kubeadm-config-upload", first, HERE / "upload-config.sh", {
        "KUBEADM_CONFIG": payload.KUBEADM_CONFIG, "ETCD_ENDPOINTS": ",".join(spec.topology.etcd_client_endpoints)},
        after=(previous, f"{name}-{first}-kubeadm-config")))
    return check(out, outside)


def _bootstrap(name: str, spec: Spec, cps: Sequence[str]) -> list[Step]:
    """kubeadm init on the first control plane, the CNI, the admin
    kubeconfig, the shared certificates read once from the first (kubeadm's
    CAs and service-account key; a secret output) for each joiner; then
    each other control plane joins, one at a time. The last step is the
    last join (or the init)."""
    k8s, first = spec.kubernetes, cps[0]
    own = lambda step: f"{name}-{first}-{step}"  # noqa: E731
    out = [
        Step(own("kubeadm-init"), first, HERE / "init.sh", {
            "KUBEADM_CONFIG": payload.KUBEADM_CONFIG, "ADMIN_USER": spec.ssh.user,
            "ETCD_ENDPOINTS": ",".join(spec.topology.etcd_client_endpoints),
            "KEEP_FILES": " ".join(f[0] for f in KUBEADM_ETCD_FILES), **cgroup_values(spec)},
            after=(*ready_for_kubeadm(name, spec, first), own("kubeadm-config"), API_READY)),
        Step(own("cni"), first, HERE / "cni.sh", {
            "CNI_PLUGIN": k8s.cni.plugin, "CNI_URL": payload.cni_manifest_url(spec), "POD_SUBNET": str(k8s.pod_subnet)},
            after=(own("kubeadm-init"),)),
        Step(own("kubeconfig"), first, HERE / "kubeconfig.sh", {}, secret=True, secret_stdout=True,
             after=(own("kubeadm-init"),)),
        Step(own("export-shared-certs"), first, HERE / "export-shared-certs.sh",
             {"SHARED_FILES": " ".join(path for path, _ in payload.SHARED_CERTS)}, secret=True, secret_stdout=True,
             after=(own("kubeadm-init"),)),
    ]
    shared_spec = steps.pem_files_spec((path, mode, "root", "root") for path, mode in payload.SHARED_CERTS)
    joined = own("kubeadm-init")
    for node in cps[1:]:
        certs = Step(f"{name}-{node}-shared-certs", node, steps.PEM_FILES, {"PEM_FILES": shared_spec},
                     stdin=Derived(own("export-shared-certs"), _same), secret=True, after=(READY,))
        out += [certs, *join(name, spec, node, control_plane=True, shared_certs=certs.name,
                             after=(joined, *ready_for_kubeadm(name, spec, node)))]
        joined = out[-1].name
    return out


def _apiserver_restarts(name: str, spec: Spec, cps: Sequence[str], previous: str) -> list[Step]:
    """A re-issued etcd client cert (rotation, validity) or a changed etcd
    membership: apiservers restart one at a time (the new cert, or the new
    --etcd-servers in their static manifest), each ready before the next.
    The digest of both is in the script's text: a change is an update of
    this step, which runs the script (a `triggers` change would replace it
    and run `create`). The script decides from the node what is left to do,
    so its create and a re-run are safe. CERT_NOT_AFTER: the client cert's
    expiry, for a person reading the change."""
    servers = ",".join(spec.topology.etcd_client_endpoints)
    values = {"ETCD_ENDPOINTS": servers,
              "RESTART_PAYLOAD": Derived((ETCD_CA, CLIENT_CERT), partial(_client_payload, servers), secret=False),
              "CERT_NOT_AFTER": Derived(CLIENT_NOT_AFTER, _same, secret=False),
              "ETCD_CERT": Face.cert}
    out = []
    for node in cps:
        out.append(Step(f"{name}-{node}-apiserver-restart", node, HERE / "apiserver-restart.sh", values,
                        update=True, after=(previous, f"{name}-{node}-etcd-certs")))
        previous = out[-1].name
    return out


def _encryption_rotation(name: str, spec: Spec, cps: Sequence[str], previous: str) -> list[Step]:
    """A key rotation (kubernetes.io, "Rotating a decryption key"): every
    apiserver learns every listed key first (add: the key it encrypts with
    stays first), one at a time; then each encrypts with the first key
    (use), one at a time; then every Secret is written again with it. The
    key names are in the scripts' text (the keys themselves on stdin): a
    change of the list is an update of each."""
    k8s = spec.kubernetes
    out = []
    for stage in ("add", "use"):
        for node in cps:
            out.append(Step(f"{name}-{node}-encryption-{stage}", node, HERE / "encryption.sh",
                            {**encryption_values(spec), "STAGE": stage}, stdin=encryption_stdin(spec), secret=True,
                            after=(previous,)))
            previous = out[-1].name
    out.append(Step(f"{name}-{cps[0]}-encryption-rewrite", cps[0], HERE / "encryption-rewrite.sh", {
        "ACTIVE_KEY": k8s.encryption_keys[0], "ENC_PROVIDER": k8s.encryption_provider}, after=(previous,)))
    return out


def workers_plan(name: str, spec: Spec) -> list[Step]:
    """Worker nodes: prepared like control planes (without etcd certs) and,
    when bootstrapping, joined one at a time after the control planes."""
    out: list[Step] = []
    last = CONTROL_PLANES_JOINED
    for node in (n.name for n in spec.topology.workers):
        base = prepare_node(name, spec, node)
        out += base
        if spec.kubernetes.bootstrap:
            out += join(name, spec, node, control_plane=False, after=(last, *(s.name for s in base)))
            last = out[-1].name
    return check(out, (CONTROL_PLANES_JOINED,))
