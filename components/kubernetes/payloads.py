"""Pure renderers of kubeadm's configuration (from dicts, dumped as YAML).

Fields follow kubeadm's documented config API: v1beta3 (Kubernetes 1.22-1.30)
and v1beta4 (1.31+). The one shape that differs in what hakube sets is
`extraArgs`/`kubeletExtraArgs`: a map in v1beta3, a list of {name, value}
in v1beta4.
"""
from __future__ import annotations

from typing import Mapping

import yaml

from config import versions
from config.spec import Spec
from config.topology import NodeSpec

from ..etcd.plan import Face

KUBEADM_CONFIG = "/etc/kubernetes/hakube/kubeadm.yaml"
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
# The namespace the verification gate creates and then finds in etcd.
CHECK_NAMESPACE = "hakube-external-etcd-check"
# ... and with encryption at rest, a Secret in it whose value must not be
# readable in etcd
CHECK_SECRET = "hakube-encryption-check"
CHECK_PROBE = "hakube-plaintext-probe"
# Practice mode: what the seed's exam scenario hands the learner.
PRACTICE_CERTS_DIR = "/root/certs"
PRACTICE_CONFIG = "/root/kubeadm.yaml"
PKI = "/etc/kubernetes/pki"
APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
# Encryption of Secrets at rest: a directory of its own, mounted read-only
# into kube-apiserver (not /etc/kubernetes/hakube: join configs pass there).
ENC_DIR = "/etc/kubernetes/hakube-encryption"
ENC_CONFIG = f"{ENC_DIR}/encryption-config.yaml"
AUDIT_DIR = "/etc/kubernetes/hakube-audit"
AUDIT_POLICY = f"{AUDIT_DIR}/policy.yaml"
AUDIT_LOG_DIR = "/var/log/kubernetes/audit"
# What every control plane shares (kubeadm's manual certificate distribution),
# (path, mode): read from the first control plane, written on each joiner.
SHARED_CERTS = ((f"{PKI}/ca.crt", "0644"), (f"{PKI}/ca.key", "0600"), (f"{PKI}/sa.key", "0600"),
                (f"{PKI}/sa.pub", "0644"), (f"{PKI}/front-proxy-ca.crt", "0644"),
                (f"{PKI}/front-proxy-ca.key", "0600"))


def _args(api: str, values: Mapping[str, str]) -> object:
    if api == "v1beta3":
        return dict(values)
    return [{"name": k, "value": v} for k, v in values.items()]


def pause_image(spec: Spec) -> str:
    """The pod sandbox image kubeadm names for the cluster's minor, from the
    mirror kubeadm pulls from when one is set."""
    k8s = spec.kubernetes
    return f"{k8s.image_repository or 'registry.k8s.io'}/pause:{versions.pause_version(k8s.minor)}"


def _node_registration(spec: Spec, node: NodeSpec) -> dict:
    return {
        "name": node.name,
        "criSocket": CRI_SOCKET,
        # The node's address on the cluster network, never a NAT-only one.
        "kubeletExtraArgs": _args(spec.kubernetes.kubeadm_api, {"node-ip": str(node.ip)}),
    }


def cluster_configuration(spec: Spec) -> dict:
    k8s, topo = spec.kubernetes, spec.topology
    sans = [str(k8s.vip), *[str(n.ip) for n in topo.load_balancers],
            *[n.name for n in topo.load_balancers], *[n.fqdn for n in topo.load_balancers]]
    return {
        "apiVersion": f"kubeadm.k8s.io/{k8s.kubeadm_api}",
        "kind": "ClusterConfiguration",
        "clusterName": k8s.cluster_name,
        "kubernetesVersion": f"v{k8s.version}",
        "controlPlaneEndpoint": k8s.endpoint,
        "networking": {
            "podSubnet": str(k8s.pod_subnet),
            "serviceSubnet": str(k8s.service_subnet),
        },
        "etcd": {"external": {
            "endpoints": list(topo.etcd_client_endpoints),
            "caFile": Face.ca,
            "certFile": Face.cert,
            "keyFile": Face.key,
        }},
        "apiServer": api_server(spec, sans),
        # kubeadm's default (registry.k8s.io) unless the stack names a mirror
        **({"imageRepository": k8s.image_repository} if k8s.image_repository else {}),
    }


def _mount(name: str, path: str, read_only: bool) -> dict:
    return {"name": name, "hostPath": path, "mountPath": path, "readOnly": read_only,
            "pathType": "DirectoryOrCreate"}


def api_server(spec: Spec, sans: list[str]) -> dict:
    """certSANs, and when hakube runs kubeadm: the EncryptionConfiguration
    and the audit policy and log (kube-apiserver flags, each directory
    mounted from the host). Practice mode leaves both to the learner."""
    k8s = spec.kubernetes
    args: dict[str, str] = {}
    volumes: list[dict] = []
    if k8s.bootstrap and k8s.encryption_enabled:
        args["encryption-provider-config"] = ENC_CONFIG
        volumes.append(_mount("hakube-encryption", ENC_DIR, True))
    if k8s.bootstrap and k8s.audit_enabled:
        args.update({"audit-policy-file": AUDIT_POLICY, "audit-log-path": f"{AUDIT_LOG_DIR}/audit.log",
                     "audit-log-maxage": str(k8s.audit_max_age_days),
                     "audit-log-maxbackup": str(k8s.audit_max_backups),
                     "audit-log-maxsize": str(k8s.audit_max_size_mb)})
        volumes += [_mount("hakube-audit-policy", AUDIT_DIR, True), _mount("hakube-audit-log", AUDIT_LOG_DIR, False)]
    out: dict = {"certSANs": sans}
    if args:
        out["extraArgs"] = _args(k8s.kubeadm_api, args)
        out["extraVolumes"] = volumes
    return out


def audit_policy() -> dict:
    """A policy in the spirit of kubernetes.io's example and the one GKE
    ships: nothing for health probes, events and the system's own routine
    reads; Secrets, ConfigMaps and token requests at Metadata only (never
    their contents); other reads at Metadata; every other change with its
    request body."""
    core = ""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version", "/metrics"]},
            {"level": "None", "resources": [{"group": core, "resources": ["events"]},
                                            {"group": "events.k8s.io", "resources": ["events"]}]},
            {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"],
             "resources": [{"group": core, "resources": ["endpoints", "services", "services/status"]},
                           {"group": "discovery.k8s.io", "resources": ["endpointslices"]}]},
            {"level": "None", "userGroups": ["system:nodes"], "verbs": ["get"],
             "resources": [{"group": core, "resources": ["nodes", "nodes/status"]}]},
            {"level": "None", "users": ["system:kube-controller-manager", "system:kube-scheduler"],
             "verbs": ["get", "update"], "namespaces": ["kube-system"],
             "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
            {"level": "Metadata", "resources": [
                {"group": core, "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                {"group": "authentication.k8s.io", "resources": ["tokenreviews"]}]},
            {"level": "Metadata", "verbs": ["get", "list", "watch"]},
            {"level": "Request"},
        ],
    }


def audit_policy_yaml() -> str:
    return dump(audit_policy())


def init_configuration(spec: Spec, node: NodeSpec) -> dict:
    return {
        "apiVersion": f"kubeadm.k8s.io/{spec.kubernetes.kubeadm_api}",
        "kind": "InitConfiguration",
        "localAPIEndpoint": {"advertiseAddress": str(node.ip), "bindPort": spec.kubernetes.api_port},
        "nodeRegistration": _node_registration(spec, node),
    }


# the kubeadm preflight check that fails on a cgroup v1 node once kubelet is
# 1.35 or newer, whatever its configuration says (k8s.io/system-validators)
CGROUP_V1_PREFLIGHT = "SystemVerification"
# kubelet's failCgroupV1 arrived in 1.31 (default true from 1.35); an older
# kubelet runs on cgroup v1 unasked and does not know the key
FAIL_CGROUP_V1_SINCE = 31


def kubelet_configuration(spec: Spec) -> dict:
    """Every kubelet's configuration: kubeadm init uploads it for the whole
    cluster, so joins carry none."""
    doc = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
    }
    if spec.kubernetes.allow_cgroup_v1 and spec.kubernetes.minor >= FAIL_CGROUP_V1_SINCE:
        doc["failCgroupV1"] = False
    return doc


def kube_proxy_configuration(spec: Spec) -> dict | None:
    """kube-proxy's settings that differ from its defaults, or None (then
    kubeadm writes its own). kubeadm init puts them in the kube-proxy
    ConfigMap; a later change of them is not applied to a running cluster."""
    if spec.kubernetes.conntrack_max_per_core is None:
        return None
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "conntrack": {"maxPerCore": spec.kubernetes.conntrack_max_per_core},
    }


def join_configuration(spec: Spec, node: NodeSpec, *, token: str, ca_cert_hash: str,
                       control_plane: bool) -> dict:
    """A control plane joins with the shared certificates already in place
    (kubeadm's manual certificate distribution: no certificateKey, nothing
    uploaded to the cluster that expires); a worker joins without them."""
    doc = {
        "apiVersion": f"kubeadm.k8s.io/{spec.kubernetes.kubeadm_api}",
        "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {
            "apiServerEndpoint": spec.kubernetes.endpoint,
            "token": token,
            "caCertHashes": [ca_cert_hash],
        }},
        "nodeRegistration": _node_registration(spec, node),
    }
    if control_plane:
        doc["controlPlane"] = {
            "localAPIEndpoint": {"advertiseAddress": str(node.ip), "bindPort": spec.kubernetes.api_port},
        }
    return doc


HEADER = "# Managed by hakube: changes are overwritten by `pulumi up`.\n"


def dump(*docs: dict) -> str:
    """The documents with `---` between them and the header comment inside the
    first one. kubeadm splits a file at each `---` line and refuses the whole
    file when one part has no kind, so nothing may stand before the first
    document's own lines, not even a lone comment."""
    return HEADER + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=False)


def init_config_yaml(spec: Spec, node: NodeSpec) -> str:
    proxy = kube_proxy_configuration(spec)
    return dump(cluster_configuration(spec), init_configuration(spec, node), kubelet_configuration(spec),
                *([proxy] if proxy else []))


def join_config_yaml(spec: Spec, node: NodeSpec, credentials: Mapping[str, str], control_plane: bool) -> str:
    """A joining node's kubelet takes its configuration from the cluster (the
    kubelet-config ConfigMap init uploads): kubeadm join ignores a
    KubeletConfiguration here, with a warning, so none is written."""
    return dump(join_configuration(spec, node, token=credentials["token"], ca_cert_hash=credentials["caCertHash"],
                                   control_plane=control_plane))


def cni_manifest_url(spec: Spec) -> str:
    cni = spec.kubernetes.cni
    if cni.manifest_url:
        return cni.manifest_url
    if cni.plugin == "calico":
        return f"https://raw.githubusercontent.com/projectcalico/calico/v{cni.version}/manifests/calico.yaml"
    return f"https://github.com/flannel-io/flannel/releases/download/v{cni.version}/kube-flannel.yml"


def practice_commands(spec: Spec) -> list[str]:
    """What the learner runs next in practice mode (the seed's exam steps)."""
    cps = spec.topology.control_planes
    first, others = cps[0], cps[1:]
    # on cgroup v1 nodes (kubernetes.allowCgroupV1) kubeadm's SystemVerification fails
    v1 = f" --ignore-preflight-errors={CGROUP_V1_PREFLIGHT}" if spec.kubernetes.allow_cgroup_v1 else ""
    cmds = [
        f"ssh {spec.ssh.user}@{first.ip}   # {first.name}: certs in {PRACTICE_CERTS_DIR}, "
        f"config in {PRACTICE_CONFIG}, etcd client certs already at kubeadm's paths",
        f"sudo kubeadm init --config {PRACTICE_CONFIG} --upload-certs{v1}",
        "mkdir -p ~/.kube && sudo cp /etc/kubernetes/admin.conf ~/.kube/config && sudo chown $(id -u):$(id -g) ~/.kube/config",
        f"kubectl apply -f {cni_manifest_url(spec)}   # set the pod CIDR to {spec.kubernetes.pod_subnet}",
    ]
    cmds += [f"on {n.name} ({n.ip}): sudo kubeadm join {spec.kubernetes.endpoint} --control-plane "
             f"--token ... --discovery-token-ca-cert-hash ... --certificate-key ...{v1}   # from kubeadm init's output"
             for n in others]
    cmds += [f"on {n.name} ({n.ip}): sudo kubeadm join {spec.kubernetes.endpoint} --token ... "
             f"--discovery-token-ca-cert-hash ...{v1}" for n in spec.topology.workers]
    cmds.append("kubectl get nodes   # every node Ready; kubectl -n kube-system get pods | grep etcd finds nothing")
    return cmds + upgrade_commands(spec)


def upgrade_commands(spec: Spec) -> list[str]:
    """kubeadm's upgrade procedure to `kubernetes.version`, node by node, as
    hakube's upgrade steps run it (practice mode: for the learner, after a
    `pulumi up` with the new version has moved each node's package repository
    to its minor; one minor at a time)."""
    v, topo = spec.kubernetes.version, spec.topology
    pkg = f"'{v}-*'"
    install = "sudo apt-get update && sudo apt-get install -y --allow-change-held-packages"
    kubelet = (f"{install} kubelet={pkg} kubectl={pkg} && sudo apt-mark hold kubelet kubectl "
               "&& sudo systemctl daemon-reload && sudo systemctl restart kubelet")
    cmds = [f"# upgrading to {v} (from the minor before it; never skip one): one node at a time, in this order"]
    for i, n in enumerate(topo.control_planes):
        upgrade = f"sudo kubeadm upgrade plan && sudo kubeadm upgrade apply v{v}" if i == 0 else "sudo kubeadm upgrade node"
        cmds.append(f"on {n.name}: {install} kubeadm={pkg} && sudo apt-mark hold kubeadm && {upgrade}; "
                    f"kubectl drain {n.name} --ignore-daemonsets; {kubelet}; kubectl uncordon {n.name}")
    first = topo.control_planes[0].name
    for n in topo.workers:
        cmds.append(f"on {first}: kubectl drain {n.name} --ignore-daemonsets --delete-emptydir-data; "
                    f"on {n.name}: {install} kubeadm={pkg} && sudo apt-mark hold kubeadm && sudo kubeadm upgrade node "
                    f"&& {kubelet}; on {first}: kubectl uncordon {n.name}")
    return cmds
