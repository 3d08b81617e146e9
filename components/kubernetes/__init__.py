"""Kubernetes on the nodes: every control plane and worker prepared up to
kubeadm (kernel, containerd, pinned kubeadm/kubelet/kubectl), the external
etcd's client certs at kubeadm's paths behind an etcd preflight gate; then
`kubeadm init` once on the first control plane, joins one at a time with
credentials minted just before each, the CNI, and the seed's checks as gates.

Practice mode (`kubernetes.bootstrap: false`) stops before kubeadm: the
config is left at /root/kubeadm.yaml and the certs in /root/certs for the
learner, and nothing runs kubeadm.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pulumi
import pulumi_tls as tls
from pulumi_command import remote

from config.spec import Spec

from .. import steps
from ..etcd import EtcdCluster, install_script
from ..etcd import payloads as etcd_payload
from ..node import Node
from ..pki import PRIVATE_OUTPUTS, Pki
from ..steps.plan import digest
from ..remote import step as make_step
from . import payloads as payload
from .plan import CNI, DRAIN_TIMEOUT, JOINED, UPGRADED, WORKERS_JOINED, checks_plan, packages, upgrade_plan

HERE = Path(__file__).parent
# kubeadm's own certificates on a control plane (one year; `kubeadm certs renew`)
KUBEADM_CERTS = ("/etc/kubernetes/pki/*.crt", "/etc/kubernetes/pki/etcd/*.crt")
# (path, mode, owner, group) of the client certs a control plane gets, in the
# order of the PEM bundle: CA, apiserver-etcd-client cert, its key.
KUBEADM_ETCD_FILES = (
    (etcd_payload.KUBEADM_ETCD_CA, "0644", "root", "root"),
    (etcd_payload.KUBEADM_ETCD_CERT, "0644", "root", "root"),
    (etcd_payload.KUBEADM_ETCD_KEY, "0600", "root", "root"),
)
# how long a leaving node's pods get to move (kubectl drain --timeout, seconds)
PRACTICE_FILES = tuple((f"{payload.PRACTICE_CERTS_DIR}/{name}", mode, "root", "root")
                       for name, mode in (("ca.pem", "0644"), ("client.crt", "0644"), ("client.key", "0600")))


def script(name: str, values: dict) -> str:
    return steps.step_script(HERE / f"{name}.sh", values)


def cgroup_values(spec: Spec) -> dict:
    """What kubeadm_cgroup_args reads (init and join): nothing unless the
    stack allows cgroup v1, so other stacks' steps keep their text."""
    if not spec.kubernetes.allow_cgroup_v1:
        return {}
    return {"ALLOW_CGROUP_V1": 1, "CGROUP_V1_PREFLIGHT": payload.CGROUP_V1_PREFLIGHT}


RENEW_JOB = "hakube-kubeadm-certs-renew"


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


@dataclass(frozen=True)
class ControlPlaneArgs:
    spec: Spec
    nodes: Sequence[Node]
    pki: Pki
    etcd: EtcdCluster
    api_ready: pulumi.Resource          # the load balancer answers on the VIP


def command(parent: pulumi.Resource, name: str, node: Node, step: str, create: str, *,
            after: Sequence[pulumi.Resource], stdin=None, secret: bool = False,
            secret_stdout: bool = False) -> remote.Command:
    """One step on one node. `secret`: its stdin or output carries secrets, so
    the provider logs nothing; `secret_stdout`: its stdout is a secret output."""
    return make_step(f"{name}-{node.name}-{step}", node, create, stdin=stdin, secret=secret,
                     secret_stdout=secret_stdout, parent=parent, after=after)


def prepare_node(parent: pulumi.Resource, name: str, spec: Spec, node: Node) -> list[pulumi.Resource]:
    """kernel -> containerd -> kubeadm/kubelet/kubectl on one node."""
    k8s = spec.kubernetes
    kernel = command(parent, name, node, "kernel", script("kernel", {}), after=[node.ready])
    runtime = command(parent, name, node, "containerd", script(
        "containerd", {"CRI_SOCKET": payload.CRI_SOCKET, "PAUSE_IMAGE": payload.pause_image(spec)}),
        after=[kernel])
    packages = command(parent, name, node, "kube-packages", script("packages", {
        "K8S_VERSION": k8s.version, "K8S_MINOR": f"1.{k8s.minor}",
        "K8S_PACKAGE_REPO": k8s.package_repo}), after=[runtime])
    return [kernel, runtime, packages]


def join(parent: pulumi.Resource, name: str, spec: Spec, node: Node, *, first: Node,
         control_plane: bool, after: Sequence[pulumi.Resource],
         shared_certs: Optional[remote.Command] = None) -> remote.Command:
    """`node` joins: a bootstrap token minted on the first control plane, the
    join with it, the token deleted; one after the other, after `after`
    (chaining joins makes them one at a time). Under the engine a failed join
    leaves the token step as it was ("same" next run) and runs the join again:
    the token has no expiry until its join-done step deletes it, so a retry
    however late still holds a valid one. Then the steps whose deletes take
    the node out of the cluster when the stack drops it (leave). Returns the
    join-done step."""
    # the token's id follows the joiner's machine: a rebuilt node gets a new one
    token_id = node.machine.apply(lambda machine: digest(spec.stack, node.name, machine)[:6])
    token_script = token_id.apply(lambda tid: script("join-token", {"TOKEN_ID": tid, "JOINER": node.name,
                                                                     "CA_CERT": f"{payload.PKI}/ca.crt"}))
    done_script = token_id.apply(lambda tid: script("join-done", {"TOKEN_ID": tid, "JOINER": node.name}))
    # its delete: a node that leaves the stack before it joined leaves no token behind
    token = make_step(f"{name}-{first.name}-join-token-{node.name}", first, token_script, delete=done_script,
                      secret=True, secret_stdout=True, parent=parent, after=after)
    n = spec.topology.node(node.name)
    join_cfg = pulumi.Output.secret(token.stdout.apply(
        lambda out: payload.join_config_yaml(spec, n, json.loads(out), control_plane)))
    keep = [f[0] for f in KUBEADM_ETCD_FILES] + [f[0] for f in payload.SHARED_CERTS] if control_plane else []
    joined = command(parent, name, node, "kubeadm-join", script("join", {
        "CONTROL_PLANE": int(control_plane), "ADMIN_USER": spec.ssh.user, "KEEP_FILES": " ".join(keep),
        **cgroup_values(spec)}),
        stdin=join_cfg, secret=True, after=[token, *([shared_certs] if shared_certs else []), *after])
    leave(parent, name, spec, node, first=first, joined=joined)
    return make_step(f"{name}-{first.name}-join-done-{node.name}", first, done_script,
                     parent=parent, after=[joined])


def leave(parent: pulumi.Resource, name: str, spec: Spec, node: Node, *, first: Node,
          joined: pulumi.Resource) -> None:
    """What takes a joined node out of the cluster when the stack drops it,
    as the deletes of three steps that do nothing on create: the engine
    deletes dependents first, so the order is drain (on the first control
    plane) -> kubeadm reset (on the node: its kubelet would register it
    again) -> delete the Node from the API (first control plane); all of it
    after every create and update of the run (HAProxy has dropped a leaving
    control plane by then) and before the node's VM, which they depend on.
    Steps of their own, never replaced: a replaced step runs its delete."""
    api = {"NODE": node.name, "API_ADDRESS": str(spec.topology.node(first.name).ip),
           "API_PORT": spec.kubernetes.api_port}
    forget = make_step(f"{name}-{first.name}-forget-{node.name}", first.connection, "true",
                       delete=script("leave-forget", api), parent=parent, after=[joined])
    reset = make_step(f"{name}-{node.name}-reset", node.connection, "true",
                      delete=script("leave-reset", {}), parent=parent, after=[joined, forget])
    drain = f"{name}-{first.name}-drain-{node.name}"
    make_step(drain, first.connection, "true", delete=script("leave-drain", {
        **api, "DRAIN_TIMEOUT": DRAIN_TIMEOUT, "DRAIN_STEP": drain}), parent=parent, after=[reset])


@dataclass(frozen=True)
class _Shared:
    """What the control plane's steps share, worked out once per run."""
    practice: bool                       # kubernetes.bootstrap false: kubeadm is the learner's
    files: tuple                         # the etcd client files every control plane gets
    bundle: pulumi.Output                # their PEMs (secret), on stdin of each node's etcd-certs
    etcd_values: dict
    encrypt: bool
    enc_values: dict
    enc_keys: Optional[pulumi.Output]    # every encryption key, derived from a seed in state (secret)


class ControlPlane(pulumi.ComponentResource):
    first: Node
    preflight: dict[str, remote.Command]
    init: Optional[remote.Command]
    joined: Optional[remote.Command]    # the last control-plane join (or init)
    kubeconfig: Optional[pulumi.Output]  # secret
    next_steps: Optional[list[str]]      # practice mode

    def __init__(self, name: str, args: ControlPlaneArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:kubernetes:ControlPlane", name, None, opts)
        spec = args.spec
        self.first = first = args.nodes[0]
        shared = self._shared(name, args)
        self.cert_checks: dict[str, remote.Command] = {}
        self.preflight = {}
        self.packages: dict[str, pulumi.Resource] = {}
        ready: dict[str, list[pulumi.Resource]] = {}
        certs_steps: dict[str, remote.Command] = {}
        for node in args.nodes:
            ready[node.name], certs_steps[node.name] = self._node(name, args, node, shared)

        dests = payload.KUBEADM_CONFIG + (f" {payload.PRACTICE_CONFIG}" if shared.practice else "")
        config = command(self, name, first, "kubeadm-config", steps.step_script(steps.FILE, {
            "DEST": dests, "MODE": "0600", "OWNER": "root:root"}),
            stdin=payload.init_config_yaml(spec, spec.topology.node(first.name)), after=[first.ready])

        self.init = self.joined = self.kubeconfig = self.cni = None
        # checks `make converge` runs again: every control plane reaches etcd
        self.converge: list[remote.Command] = [*self.preflight.values(), *self.cert_checks.values()]
        self.next_steps = payload.practice_commands(spec) if shared.practice else None
        self.settled: list[pulumi.Resource] = [config, *self.preflight.values()]
        if shared.practice:
            self.register_outputs({"next_steps": self.next_steps})
            return
        self._bootstrap(name, args, ready, config)
        previous = self._apiserver_restarts(name, args, certs_steps)
        if shared.encrypt:
            previous = self._encryption_rotation(name, args, shared, previous)
        # kubeadm's own record of the ClusterConfiguration (kube-system/kubeadm-config),
        # which later joins and `kubeadm upgrade` read: the etcd endpoints follow.
        previous = command(self, name, first, "kubeadm-config-upload", script("upload-config", {
            "KUBEADM_CONFIG": payload.KUBEADM_CONFIG, "ETCD_ENDPOINTS": ",".join(args.etcd.endpoints)}),
            after=[previous, config])
        self.settled.append(previous)
        self.register_outputs({})

    def _shared(self, name: str, args: ControlPlaneArgs) -> _Shared:
        k8s = args.spec.kubernetes
        practice = not k8s.bootstrap
        files = KUBEADM_ETCD_FILES + (PRACTICE_FILES if practice else ())
        client_pems = pulumi.Output.all(args.pki.ca_cert_pem, args.pki.apiserver_etcd_client.cert_pem,
                                        args.pki.apiserver_etcd_client.key_pem)
        bundle = pulumi.Output.secret(client_pems.apply(
            lambda p: steps.pem_bundle(list(p) * (2 if practice else 1), [f[0] for f in files])))
        encrypt = k8s.encryption_enabled and not practice
        enc_keys = None
        if encrypt:
            # the random secret every encryption key is derived from, kept in state
            seed = tls.PrivateKey(f"{name}-encryption-seed", algorithm="ED25519", opts=pulumi.ResourceOptions(
                parent=self, additional_secret_outputs=PRIVATE_OUTPUTS))
            enc_keys = pulumi.Output.secret(seed.private_key_openssh.apply(
                lambda pem: encryption_keys(k8s.encryption_keys, pem)))
        return _Shared(
            practice=practice, files=files, bundle=bundle,
            etcd_values={"ETCD_ENDPOINTS": ",".join(args.etcd.endpoints), "ETCD_CA": etcd_payload.KUBEADM_ETCD_CA,
                         "ETCD_CERT": etcd_payload.KUBEADM_ETCD_CERT, "ETCD_KEY": etcd_payload.KUBEADM_ETCD_KEY},
            encrypt=encrypt,
            enc_values={"ENC_CONFIG": payload.ENC_CONFIG, "ENC_PROVIDER": k8s.encryption_provider,
                        "KEYS": " ".join(k8s.encryption_keys), "API_PORT": k8s.api_port,
                        "APISERVER_MANIFEST": payload.APISERVER_MANIFEST},
            enc_keys=enc_keys)

    def _node(self, name: str, args: ControlPlaneArgs, node: Node,
              shared: _Shared) -> tuple[list[pulumi.Resource], remote.Command]:
        """One control plane's steps before kubeadm: packages, etcdctl, the
        etcd client files and their checks, the etcd preflight, encryption
        config and audit policy. Returns what kubeadm on it waits for, and
        its etcd-certs step."""
        spec, k8s, files = args.spec, args.spec.kubernetes, shared.files
        base = prepare_node(self, name, spec, node)
        self.packages[node.name] = base[-1]
        # after the members' installs: their upgrade check refuses a bad
        # version before anything (this download included) changes
        etcdctl = command(self, name, node, "etcdctl", install_script(spec.etcd, ("etcdctl",)),
                          after=[node.ready, *(s.install for s in args.etcd.steps.values())])
        certs = command(self, name, node, "etcd-certs", steps.step_script(
            steps.PEM_FILES, {"PEM_FILES": steps.pem_files_spec(files)}),
            stdin=shared.bundle, secret=True, after=[node.ready])
        # hakube's etcd client files and kubeadm's own certificates
        # checked daily against their expiry (fails loudly, says how)
        values, check_script = steps.cert_check(
            spec.stack, spec.pki.check_days, spec.pki.check_calendar,
            [f[0] for f in files if not f[0].endswith(".key")], KUBEADM_CERTS)
        self.cert_checks[node.name] = command(self, name, node, "cert-check",
                                              steps.job_step_script(values), stdin=check_script,
                                              after=[certs])
        if not shared.practice:
            values, renew_script = cert_renewal(spec, [n.name for n in args.nodes].index(node.name))
            self.cert_checks[f"{node.name}-renewal"] = command(
                self, name, node, "kubeadm-certs-renewal", steps.job_step_script(values),
                stdin=renew_script, after=[certs])
        self.preflight[node.name] = command(
            self, name, node, "etcd-preflight", script("preflight", shared.etcd_values),
            # after the etcd restart chain: never mid-way through a rolling restart
            after=[etcdctl, certs, args.etcd.health, args.etcd.last_restart])
        ready = [*base, self.preflight[node.name]]
        if shared.encrypt:
            # in place before kubeadm starts an apiserver that reads it
            ready.append(command(self, name, node, "encryption-config", script("encryption", {
                **shared.enc_values, "STAGE": "initial"}), stdin=shared.enc_keys, secret=True, after=[node.ready]))
        if k8s.audit_enabled and not shared.practice:
            ready.append(command(self, name, node, "audit-policy", steps.step_script(steps.FILE, {
                "DEST": payload.AUDIT_POLICY, "MODE": "0600", "OWNER": "root:root"}),
                stdin=payload.audit_policy_yaml(), after=[node.ready]))
        return ready, certs

    def _bootstrap(self, name: str, args: ControlPlaneArgs, ready: dict[str, list[pulumi.Resource]],
                   config: remote.Command) -> None:
        """kubeadm init on the first control plane, the CNI, the admin
        kubeconfig, then each other control plane joins, one at a time."""
        spec, first = args.spec, self.first
        k8s = spec.kubernetes
        self.init = command(self, name, first, "kubeadm-init", script("init", {
            "KUBEADM_CONFIG": payload.KUBEADM_CONFIG, "ADMIN_USER": spec.ssh.user,
            "ETCD_ENDPOINTS": ",".join(args.etcd.endpoints),
            "KEEP_FILES": " ".join(f[0] for f in KUBEADM_ETCD_FILES), **cgroup_values(spec)}),
            after=[*ready[first.name], config, args.api_ready])
        self.cni = command(self, name, first, "cni", script("cni", {
            "CNI_PLUGIN": k8s.cni.plugin, "CNI_URL": payload.cni_manifest_url(spec),
            "POD_SUBNET": str(k8s.pod_subnet)}), after=[self.init])
        self.kubeconfig = pulumi.Output.secret(command(
            self, name, first, "kubeconfig", script("kubeconfig", {}),
            secret=True, secret_stdout=True, after=[self.init]).stdout)
        # what every control plane shares, read once from the first (kubeadm's
        # CAs and service-account key; secret output) for each joiner's files
        shared = pulumi.Output.secret(command(
            self, name, first, "export-shared-certs", script("export-shared-certs", {
                "SHARED_FILES": " ".join(path for path, _ in payload.SHARED_CERTS)}),
            secret=True, secret_stdout=True, after=[self.init]).stdout)
        shared_spec = steps.pem_files_spec((path, mode, "root", "root") for path, mode in payload.SHARED_CERTS)
        self.joined = self.init
        for node in args.nodes[1:]:
            certs = command(self, name, node, "shared-certs", steps.step_script(steps.PEM_FILES, {
                "PEM_FILES": shared_spec}), stdin=shared, secret=True, after=[node.ready])
            self.joined = join(self, name, spec, node, first=first, control_plane=True,
                               after=[self.joined, *ready[node.name]], shared_certs=certs)

    def _apiserver_restarts(self, name: str, args: ControlPlaneArgs,
                            certs_steps: dict[str, remote.Command]) -> pulumi.Resource:
        """A re-issued etcd client cert (rotation, validity) or a changed etcd
        membership: apiservers restart one at a time (the new cert, or the
        new --etcd-servers in their static manifest), each ready before the
        next. The digest of both is in the script's text: a change is an
        update of this step, which runs the script (a `triggers` change
        would replace it and run `create`). The script decides from the
        node what is left to do, so its create and a re-run are safe.
        Returns the last restart."""
        servers = ",".join(args.etcd.endpoints)
        client_digest = pulumi.Output.all(args.pki.ca_cert_pem, args.pki.apiserver_etcd_client.cert_pem).apply(
            lambda pems: digest(*pems, servers))
        # CERT_NOT_AFTER: the client cert's expiry, for a person reading the change
        restart = pulumi.Output.all(client_digest, args.pki.apiserver_etcd_client.not_after).apply(
            lambda v: script("apiserver-restart", {
                "ETCD_ENDPOINTS": servers, "RESTART_PAYLOAD": v[0], "CERT_NOT_AFTER": v[1],
                "ETCD_CERT": etcd_payload.KUBEADM_ETCD_CERT}))
        previous: pulumi.Resource = self.joined
        for node in args.nodes:
            previous = make_step(f"{name}-{node.name}-apiserver-restart", node, restart, update=restart,
                                 parent=self, after=[previous, certs_steps[node.name]])
        return previous

    def _encryption_rotation(self, name: str, args: ControlPlaneArgs, shared: _Shared,
                             previous: pulumi.Resource) -> pulumi.Resource:
        """A key rotation (kubernetes.io, "Rotating a decryption key"): every
        apiserver learns every listed key first (add: the key it encrypts
        with stays first), one at a time; then each encrypts with the
        first key (use), one at a time; then every Secret is written
        again with it. The key names are in the scripts' text (the keys
        themselves on stdin): a change of the list is an update of each."""
        k8s = args.spec.kubernetes
        for stage in ("add", "use"):
            for node in args.nodes:
                previous = command(self, name, node, f"encryption-{stage}", script("encryption", {
                    **shared.enc_values, "STAGE": stage}), stdin=shared.enc_keys, secret=True, after=[previous])
        return command(self, name, self.first, "encryption-rewrite", script("encryption-rewrite", {
            "ACTIVE_KEY": k8s.encryption_keys[0], "ENC_PROVIDER": k8s.encryption_provider}),
            after=[previous])


@dataclass(frozen=True)
class WorkersArgs:
    spec: Spec
    nodes: Sequence[Node]
    control_plane: ControlPlane


class Workers(pulumi.ComponentResource):
    """Worker nodes: prepared like control planes (without etcd certs) and,
    when bootstrapping, joined one at a time after the control planes."""
    last: Optional[pulumi.Resource]

    def __init__(self, name: str, args: WorkersArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:kubernetes:Workers", name, None, opts)
        cp = args.control_plane
        self.last = cp.joined
        self.packages: dict[str, pulumi.Resource] = {}
        for node in args.nodes:
            base = prepare_node(self, name, args.spec, node)
            self.packages[node.name] = base[-1]
            if cp.init is not None:
                self.last = join(self, name, args.spec, node, first=cp.first, control_plane=False,
                                 after=[self.last, *base])
        self.register_outputs({})


@dataclass(frozen=True)
class UpgradeArgs:
    spec: Spec
    control_planes: Sequence[Node]
    workers: Sequence[Node]
    packages: dict[str, pulumi.Resource]       # node name -> its kube-packages step
    after: Sequence[pulumi.Resource]           # every join done


class Upgrade(pulumi.ComponentResource):
    """`kubernetes.version` changed on a running cluster: plan.upgrade_plan."""
    last: pulumi.Resource

    def __init__(self, name: str, args: UpgradeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:kubernetes:Upgrade", name, None, opts)
        upgrade = upgrade_plan(name, args.spec)
        made = steps.realize(upgrade, parent=self, nodes={n.name: n for n in (*args.control_planes, *args.workers)},
                             outside={JOINED: list(args.after),
                                      **{packages(node): step for node, step in args.packages.items()}})
        self.last = made[upgrade[-1].name]
        self.register_outputs({})


@dataclass(frozen=True)
class ChecksArgs:
    spec: Spec
    control_plane: ControlPlane
    workers: Workers
    etcd_member: Node
    after: Sequence[pulumi.Resource] = ()


class Checks(pulumi.ComponentResource):
    """The seed's verification after bootstrap: plan.checks_plan."""

    def __init__(self, name: str, args: ChecksArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:kubernetes:Checks", name, None, opts)
        checks = checks_plan(name, args.spec)
        cp = args.control_plane
        made = steps.realize(checks, parent=self, nodes={cp.first.name: cp.first,
                                                         args.etcd_member.name: args.etcd_member},
                             outside={WORKERS_JOINED: args.workers.last, CNI: cp.cni, UPGRADED: list(args.after)})
        self.converge = [made[s.name] for s in checks if s.converge]
        self.register_outputs({})
