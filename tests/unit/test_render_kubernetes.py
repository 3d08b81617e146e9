"""kubeadm configs against kubeadm's documented v1beta3/v1beta4 fields, and
the load balancer's files against the real `haproxy -c` / `keepalived -t`."""
import shutil
import subprocess

import pytest
import yaml

from components.kubernetes import payloads as kp
from components.loadbalancer import payloads as lbp
from config import load, raw_from_stack_file
from tests.conftest import ROOT

# The fields hakube sets, per kind, as kubeadm's config API reference documents
# them (kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta3 and .v1beta4).
DOCUMENTED = {
    "ClusterConfiguration": {"apiVersion", "kind", "clusterName", "kubernetesVersion",
                             "controlPlaneEndpoint", "networking", "etcd", "apiServer", "imageRepository"},
    "InitConfiguration": {"apiVersion", "kind", "localAPIEndpoint", "nodeRegistration"},
    "JoinConfiguration": {"apiVersion", "kind", "discovery", "nodeRegistration", "controlPlane"},
    "KubeletConfiguration": {"apiVersion", "kind", "cgroupDriver", "failCgroupV1"},
}
EXTERNAL_ETCD_FIELDS = {"endpoints", "caFile", "certFile", "keyFile"}
NODE_REGISTRATION_FIELDS = {"name", "criSocket", "kubeletExtraArgs", "taints"}


def spec_for(version: str, stack: str = "dev"):
    raw = raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    raw["kubernetes"] = {**raw.get("kubernetes", {}), "version": version}
    return load(raw, stack)


@pytest.mark.parametrize("version,api", [("1.29.10", "v1beta3"), ("1.30.6", "v1beta3"),
                                         ("1.31.2", "v1beta4"), ("1.34.2", "v1beta4"),
                                         ("1.35.8", "v1beta4"), ("1.36.4", "v1beta4"),
                                         ("1.37.2", "v1beta4")])
def test_init_config_uses_the_api_of_the_version(version, api):
    spec = spec_for(version)
    node = spec.topology.control_planes[0]
    docs = list(yaml.safe_load_all(kp.init_config_yaml(spec, node)))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ClusterConfiguration", "InitConfiguration", "KubeletConfiguration"]
    for d in docs:
        assert set(d) <= DOCUMENTED[d["kind"]], d["kind"]
        if d["kind"] != "KubeletConfiguration":
            assert d["apiVersion"] == f"kubeadm.k8s.io/{api}"
    cluster, init, kubelet = docs
    assert cluster["kubernetesVersion"] == f"v{version}"
    assert cluster["controlPlaneEndpoint"] == "192.168.144.100:6443"
    ext = cluster["etcd"]["external"]
    assert set(ext) == EXTERNAL_ETCD_FIELDS and "local" not in cluster["etcd"]
    assert ext["endpoints"] == ["https://192.168.144.201:2379", "https://192.168.144.202:2379",
                                "https://192.168.144.203:2379"]
    assert ext["caFile"] == "/etc/kubernetes/pki/etcd/ca.crt"
    assert ext["certFile"] == "/etc/kubernetes/pki/apiserver-etcd-client.crt"
    assert ext["keyFile"] == "/etc/kubernetes/pki/apiserver-etcd-client.key"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}
    assert {"192.168.144.100", "192.168.144.91", "lb-01"} <= set(cluster["apiServer"]["certSANs"])
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.168.144.101", "bindPort": 6443}
    assert set(init["nodeRegistration"]) <= NODE_REGISTRATION_FIELDS
    extra = init["nodeRegistration"]["kubeletExtraArgs"]
    # v1beta4 turned extra args from a map into a list of {name, value}
    assert extra == ({"node-ip": "192.168.144.101"} if api == "v1beta3"
                     else [{"name": "node-ip", "value": "192.168.144.101"}])
    assert kubelet == {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                       "cgroupDriver": "systemd"}


def test_join_config_for_control_plane_and_worker():
    spec = spec_for("1.34.2")
    creds = {"token": "abcdef.0123456789abcdef", "caCertHash": "sha256:" + "0" * 64}
    node = spec.topology.control_planes[1]
    join = next(yaml.safe_load_all(kp.join_config_yaml(spec, node, creds, control_plane=True)))
    assert set(join) <= DOCUMENTED["JoinConfiguration"]
    assert join["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "192.168.144.100:6443", "token": creds["token"],
        "caCertHashes": [creds["caCertHash"]]}
    # the shared certs are in place before the join: no certificateKey (nothing uploaded that expires)
    assert join["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": "192.168.144.102", "bindPort": 6443}}
    worker = next(yaml.safe_load_all(kp.join_config_yaml(spec, node, creds, control_plane=False)))
    assert "controlPlane" not in worker
    # a joining kubelet takes the cluster's configuration; kubeadm join warns about any other
    assert [d["kind"] for d in yaml.safe_load_all(kp.join_config_yaml(spec, node, creds, True))] == \
        ["JoinConfiguration"]


def test_image_repository_is_where_kubeadm_pulls_from():
    spec = spec_for("1.36.4")
    cluster = next(yaml.safe_load_all(kp.init_config_yaml(spec, spec.topology.control_planes[0])))
    assert "imageRepository" not in cluster           # kubeadm's own default, registry.k8s.io
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["kubernetes"] = {"imageRepository": "registry.example.internal:5000/k8s/"}
    spec = load(raw, "dev")
    cluster = next(yaml.safe_load_all(kp.init_config_yaml(spec, spec.topology.control_planes[0])))
    assert cluster["imageRepository"] == "registry.example.internal:5000/k8s"


def test_kube_proxy_keeps_its_defaults_unless_the_conntrack_bound_is_set():
    """kubernetes.kubeProxy.conntrackMaxPerCore: kube-proxy's conntrack.maxPerCore
    in a KubeProxyConfiguration of the init file (0: kube-proxy leaves
    nf_conntrack_max alone). Unset, the file has no such document and an
    existing stack's file is unchanged."""
    spec = spec_for("1.36.4")
    node = spec.topology.control_planes[0]
    assert [d["kind"] for d in yaml.safe_load_all(kp.init_config_yaml(spec, node))] == \
        ["ClusterConfiguration", "InitConfiguration", "KubeletConfiguration"]
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["kubernetes"] = {**raw.get("kubernetes", {}), "kubeProxy": {"conntrackMaxPerCore": 0}}
    spec = load(raw, "dev")
    docs = list(yaml.safe_load_all(kp.init_config_yaml(spec, node)))
    assert docs[-1] == {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                        "conntrack": {"maxPerCore": 0}}


def test_the_cni_manifest_comes_from_its_release_unless_a_url_is_given():
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["kubernetes"] = {**raw.get("kubernetes", {}), "cni": {"plugin": "flannel", "version": "0.28.4"}}
    assert kp.cni_manifest_url(load(raw, "dev")) == \
        "https://github.com/flannel-io/flannel/releases/download/v0.28.4/kube-flannel.yml"
    raw["kubernetes"]["cni"]["manifestUrl"] = "http://mirror.example.internal/flannel/kube-flannel.yml"
    spec = load(raw, "dev")
    assert kp.cni_manifest_url(spec) == "http://mirror.example.internal/flannel/kube-flannel.yml"
    assert any("kubectl apply -f http://mirror.example.internal/flannel/kube-flannel.yml" in c
               for c in kp.practice_commands(spec))


def test_cgroup_v1_is_allowed_only_by_its_key():
    """kubernetes.allowCgroupV1: kubelet's failCgroupV1: false in the init
    file's KubeletConfiguration (1.31 and later; older kubelets have no such
    key), and the learner's kubeadm commands skip SystemVerification. Without
    it, neither."""
    def kubelet(version, allow):
        raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
        raw["kubernetes"] = {"version": version, **({"allowCgroupV1": allow} if allow is not None else {})}
        spec = load(raw, "dev")
        docs = list(yaml.safe_load_all(kp.init_config_yaml(spec, spec.topology.control_planes[0])))
        return next(d for d in docs if d["kind"] == "KubeletConfiguration"), kp.practice_commands(spec)
    for version in ("1.36.4", "1.37.2", "1.31.0"):
        doc, commands = kubelet(version, True)
        assert doc["failCgroupV1"] is False, version
        assert sum("--ignore-preflight-errors=SystemVerification" in c for c in commands) >= 3
        for allow in (None, False):
            doc, commands = kubelet(version, allow)
            assert "failCgroupV1" not in doc and not any("ignore-preflight" in c for c in commands)
    doc, _ = kubelet("1.30.6", True)
    assert "failCgroupV1" not in doc


def test_haproxy_cfg_passes_haproxy_check(tmp_path):
    spec = spec_for("1.34.2")
    cfg = lbp.haproxy_cfg(spec)
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    res = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    # it cut off requests being re-sent when a silent host was marked down (the lab measured it)
    assert "shutdown-sessions" not in cfg
    for must in ("http-check send meth GET uri /readyz", "check-ssl verify none",
                 "inter 1s fastinter 500ms fall 3 rise 2", "observe layer4 error-limit 1 on-error mark-down",
                 "timeout connect 1s", "retries 3", "option redispatch 1", "stats socket"):
        assert must in cfg
    broken = tmp_path / "broken.cfg"
    broken.write_text(cfg.replace("balance roundrobin", "balance nonsense"))
    assert subprocess.run(["haproxy", "-c", "-f", str(broken)], capture_output=True).returncode != 0


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived not installed (.ci/run installs it)")
def test_keepalived_conf_passes_keepalived_check(tmp_path):
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["nodes"] = {**raw["nodes"], "loadBalancer": {"count": 2}}
    spec = load(raw, "dev")
    lb1, lb2 = spec.topology.load_balancers
    conf = lbp.keepalived_conf(spec, lb1, lbp.auth_pass("secret"))
    path = tmp_path / "keepalived.conf"
    path.write_text(conf)
    res = subprocess.run(["keepalived", "-t", "-f", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"unicast_src_ip {lb1.ip}" in conf and f"        {lb2.ip}\n" in conf
    assert "192.168.144.100/24 dev eth0" in conf
    assert "priority 150" in conf and "priority 149" in lbp.keepalived_conf(spec, lb2, "x")



@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_kubeadm_renewal_timer_verifies_and_control_planes_go_one_at_a_time(tmp_path):
    """What job.sh checks on the node, here (the real systemd-analyze): the
    service and timer verify, the default calendar parses, the script
    parses; the i-th control plane waits i x 10 minutes and watches the
    others' apiservers, not its own."""
    from components.kubernetes.plan import RENEW_JOB, cert_renewal
    spec = load(raw_from_stack_file(ROOT / "Pulumi.dev.yaml"), "dev")
    ips = [str(n.ip) for n in spec.topology.control_planes]
    for i, ip in enumerate(ips):
        values, script = cert_renewal(spec, i)
        d = tmp_path / str(i)
        d.mkdir()
        (d / f"{RENEW_JOB}.timer").write_text(values["JOB_TIMER"])
        (d / f"{RENEW_JOB}.service").write_text(values["JOB_SERVICE"].replace(
            f"/usr/local/sbin/{RENEW_JOB}", "/bin/true"))
        for unit in (f"{RENEW_JOB}.timer", f"{RENEW_JOB}.service"):
            res = subprocess.run(["systemd-analyze", "verify", str(d / unit)], capture_output=True, text=True)
            assert res.returncode == 0, res.stdout + res.stderr
        assert f"DELAY_SECONDS={600 * i}\n" in script
        peers = next(line for line in script.splitlines() if line.startswith("PEERS="))
        assert ip not in peers and all(other in peers for other in ips if other != ip)
        assert subprocess.run(["bash", "-n", "-c", script], capture_output=True).returncode == 0
    cal = subprocess.run(["systemd-analyze", "calendar", spec.kubernetes.renewal_calendar],
                         capture_output=True, text=True)
    assert cal.returncode == 0 and "Next elapse" in cal.stdout


API_SERVER_FIELDS = {"certSANs", "extraArgs", "extraVolumes"}
HOST_PATH_MOUNT_FIELDS = {"name", "hostPath", "mountPath", "readOnly", "pathType"}
HOST_PATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice"}
# kube-apiserver's flags hakube sets (its command-line reference)
APISERVER_FLAGS = {"encryption-provider-config", "audit-policy-file", "audit-log-path", "audit-log-maxage",
                   "audit-log-maxbackup", "audit-log-maxsize"}


@pytest.mark.parametrize("version", ["1.30.6", "1.36.4"])
@pytest.mark.parametrize("audit", [False, True])
def test_the_apiserver_reads_the_encryption_config_and_the_audit_policy_from_mounted_dirs(version, audit):
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["kubernetes"] = {**raw.get("kubernetes", {}), "version": version, "audit": {"enabled": audit}}
    spec = load(raw, "dev")
    cluster = next(yaml.safe_load_all(kp.init_config_yaml(spec, spec.topology.control_planes[0])))
    api = cluster["apiServer"]
    assert set(api) <= API_SERVER_FIELDS
    args = api["extraArgs"]
    # v1beta3: a map; v1beta4: a list of {name, value}
    args = args if spec.kubernetes.kubeadm_api == "v1beta3" else {a["name"]: a["value"] for a in args}
    assert set(args) <= APISERVER_FLAGS and all(isinstance(v, str) for v in args.values())
    assert args["encryption-provider-config"] == kp.ENC_CONFIG
    assert ("audit-policy-file" in args) == audit
    mounts = {v["name"]: v for v in api["extraVolumes"]}
    for m in mounts.values():
        assert set(m) == HOST_PATH_MOUNT_FIELDS and m["pathType"] in HOST_PATH_TYPES
    # every file a flag names is inside a mounted directory; only the log's is writable
    for flag in ("encryption-provider-config", "audit-policy-file", "audit-log-path"):
        if flag in args:
            assert any(args[flag].startswith(m["mountPath"] + "/") for m in mounts.values()), flag
    assert [m["name"] for m in mounts.values() if not m["readOnly"]] == (["hakube-audit-log"] if audit else [])


def test_practice_mode_leaves_encryption_and_audit_to_the_learner():
    spec = load(raw_from_stack_file(ROOT / "Pulumi.cka.yaml"), "cka")
    cluster = next(yaml.safe_load_all(kp.init_config_yaml(spec, spec.topology.control_planes[0])))
    assert set(cluster["apiServer"]) == {"certSANs"}


# audit.k8s.io/v1 Policy as its reference documents it
AUDIT_LEVELS = {"None", "Metadata", "Request", "RequestResponse"}
AUDIT_RULE_FIELDS = {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs",
                     "omitStages", "omitManagedFields"}
AUDIT_STAGES = {"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}


def test_the_audit_policy_keeps_secret_contents_out_and_follows_the_documented_schema():
    doc = next(yaml.safe_load_all(kp.audit_policy_yaml()))
    assert doc["apiVersion"] == "audit.k8s.io/v1" and doc["kind"] == "Policy"
    assert set(doc) <= {"apiVersion", "kind", "rules", "omitStages", "omitManagedFields"}
    assert set(doc["omitStages"]) <= AUDIT_STAGES
    for rule in doc["rules"]:
        assert set(rule) <= AUDIT_RULE_FIELDS and rule["level"] in AUDIT_LEVELS
        for res in rule.get("resources", []):
            assert set(res) <= {"group", "resources", "resourceNames"}
    # the first rule matching a Secret logs its metadata only (rules are matched in order)
    def first_level(group, resource, verb):
        for rule in doc["rules"]:
            if "nonResourceURLs" in rule or ("verbs" in rule and verb not in rule["verbs"]):
                continue
            if "users" in rule or "userGroups" in rule or "namespaces" in rule:
                continue
            if "resources" in rule and not any(r["group"] == group and resource in r["resources"]
                                               for r in rule["resources"]):
                continue
            return rule["level"]
    assert first_level("", "secrets", "create") == "Metadata"
    assert first_level("", "configmaps", "update") == "Metadata"
    assert first_level("apps", "deployments", "create") == "Request"
    assert first_level("apps", "deployments", "list") == "Metadata"
    assert doc["rules"][-1] == {"level": "Request"}
