"""Pure renderers of kubeadm's configuration (from dicts, dumped as YAML).

Fields follow kubeadm's documented config API: v1beta3 (Kubernetes 1.22-1.30)
and v1beta4 (1.31+). The one shape that differs in what hakube sets is
`extraArgs`/`kubeletExtraArgs`: a map in v1beta3, a list of {name, value}
in v1beta4.
"""
from __future__ import annotations

from typing import Mapping

import yaml

from config.spec import Spec
from config.topology import NodeSpec

from ..etcd.payloads import KUBEADM_ETCD_CA, KUBEADM_ETCD_CERT, KUBEADM_ETCD_KEY

KUBEADM_CONFIG = "/etc/kubernetes/hakube/kubeadm.yaml"
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
# The namespace the verification gate creates and then finds in etcd.
CHECK_NAMESPACE = "hakube-external-etcd-check"
# Practice mode: what the seed's exam scenario hands the learner.
PRACTICE_CERTS_DIR = "/root/certs"
PRACTICE_CONFIG = "/root/kubeadm.yaml"


def _args(api: str, values: Mapping[str, str]) -> object:
    if api == "v1beta3":
        return dict(values)
    return [{"name": k, "value": v} for k, v in values.items()]


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
            "caFile": KUBEADM_ETCD_CA,
            "certFile": KUBEADM_ETCD_CERT,
            "keyFile": KUBEADM_ETCD_KEY,
        }},
        "apiServer": {"certSANs": sans},
    }


def init_configuration(spec: Spec, node: NodeSpec) -> dict:
    return {
        "apiVersion": f"kubeadm.k8s.io/{spec.kubernetes.kubeadm_api}",
        "kind": "InitConfiguration",
        "localAPIEndpoint": {"advertiseAddress": str(node.ip), "bindPort": spec.kubernetes.api_port},
        "nodeRegistration": _node_registration(spec, node),
    }


def kubelet_configuration() -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
    }


def join_configuration(spec: Spec, node: NodeSpec, *, token: str, ca_cert_hash: str,
                       certificate_key: str | None) -> dict:
    """A control plane joins with a certificate key; a worker without."""
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
    if certificate_key is not None:
        doc["controlPlane"] = {
            "localAPIEndpoint": {"advertiseAddress": str(node.ip), "bindPort": spec.kubernetes.api_port},
            "certificateKey": certificate_key,
        }
    return doc


def dump(*docs: dict) -> str:
    return "# Managed by hakube: changes are overwritten by `pulumi up`.\n" + \
        yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)


def init_config_yaml(spec: Spec, node: NodeSpec) -> str:
    return dump(cluster_configuration(spec), init_configuration(spec, node), kubelet_configuration())


def join_config_yaml(spec: Spec, node: NodeSpec, credentials: Mapping[str, str], control_plane: bool) -> str:
    return dump(join_configuration(
        spec, node, token=credentials["token"], ca_cert_hash=credentials["caCertHash"],
        certificate_key=credentials["certificateKey"] if control_plane else None), kubelet_configuration())


def cni_manifest_url(spec: Spec) -> str:
    cni = spec.kubernetes.cni
    if cni.plugin == "calico":
        return f"https://raw.githubusercontent.com/projectcalico/calico/v{cni.version}/manifests/calico.yaml"
    return f"https://github.com/flannel-io/flannel/releases/download/v{cni.version}/kube-flannel.yml"


def practice_commands(spec: Spec) -> list[str]:
    """What the learner runs next in practice mode (the seed's exam steps)."""
    cps = spec.topology.control_planes
    first, others = cps[0], cps[1:]
    cmds = [
        f"ssh {spec.ssh.user}@{first.ip}   # {first.name}: certs in {PRACTICE_CERTS_DIR}, "
        f"config in {PRACTICE_CONFIG}, etcd client certs already at kubeadm's paths",
        f"sudo kubeadm init --config {PRACTICE_CONFIG} --upload-certs",
        "mkdir -p ~/.kube && sudo cp /etc/kubernetes/admin.conf ~/.kube/config && sudo chown $(id -u):$(id -g) ~/.kube/config",
        f"kubectl apply -f {cni_manifest_url(spec)}   # set the pod CIDR to {spec.kubernetes.pod_subnet}",
    ]
    cmds += [f"on {n.name} ({n.ip}): sudo kubeadm join {spec.kubernetes.endpoint} --control-plane "
             "--token ... --discovery-token-ca-cert-hash ... --certificate-key ...   # from kubeadm init's output"
             for n in others]
    cmds += [f"on {n.name} ({n.ip}): sudo kubeadm join {spec.kubernetes.endpoint} --token ... "
             "--discovery-token-ca-cert-hash ..." for n in spec.topology.workers]
    cmds.append("kubectl get nodes   # every node Ready; kubectl -n kube-system get pods | grep etcd finds nothing")
    return cmds
