"""hakube: an HA Kubernetes cluster with an external etcd cluster on libvirt/KVM.

The only place that reads stack config and exports outputs: stack config ->
typed spec (config/) -> the Cluster component (components/) -> outputs.
"""
import os

import pulumi

from components import monitoring
from components.etcd.payloads import offsite_url
from components.cluster import Cluster, ClusterArgs
from config import NAMESPACE, ConfigError, load
from config.spec import OFFSITE_SECRET_KEY, SECRET_KEYS
from config.spec import offsite_secrets as offsite_secrets_of


def raw_config() -> dict:
    """Every `hakube:*` key of the stack, so unknown keys can be refused by
    name. The SDK offers no listing call; the engine hands the whole bag to
    the runtime, which keeps it in `pulumi.runtime.config`."""
    from pulumi.runtime import config as runtime_config
    bag = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    cfg = pulumi.Config(NAMESPACE)
    raw = {}
    for key in bag:
        ns, _, name = key.partition(":")
        if ns == NAMESPACE and name not in SECRET_KEYS:
            raw[name] = cfg.get_object(name)
        elif ns == NAMESPACE:
            raw[name] = None  # secret: read below, never parsed as plain config
    return raw


try:
    spec = load(raw_config(), pulumi.get_stack(), NAMESPACE,
                rebuild=os.environ.get("HAKUBE_REBUILD") or None)      # `make rebuild NODE=...`
except ConfigError as err:
    raise SystemExit(str(err)) from None

ssh_private_key = pulumi.Config(NAMESPACE).get_secret("sshPrivateKey")
if spec.ssh.public_key and ssh_private_key is None:
    raise SystemExit(f"{NAMESPACE}:ssh.publicKey is set but the secret {NAMESPACE}:sshPrivateKey "
                     "is not: pulumi config set --secret hakube:sshPrivateKey < ~/.ssh/id_ed25519")

# A key rotation: the key the running nodes accept until hakube has
# authorized the new pair (README, "Rotating the admin SSH key").
ssh_previous_key = pulumi.Config(NAMESPACE).get_secret("sshPreviousPrivateKey")
if ssh_previous_key is not None and not spec.ssh.public_key:
    raise SystemExit(f"{NAMESPACE}:sshPreviousPrivateKey is set but {NAMESPACE}:ssh.publicKey is not: a rotation "
                     f"moves the nodes to your own key pair ({NAMESPACE}:ssh.publicKey and the secret "
                     f"{NAMESPACE}:sshPrivateKey); the generated key is the previous one "
                     "(pulumi stack output --show-secrets sshPrivateKey)")

# Off-host backups: the remote's secret options, from secret config only.
offsite_secrets = None
offsite_raw = pulumi.Config(NAMESPACE).get_object(OFFSITE_SECRET_KEY)
if offsite_raw is not None:
    from pulumi.runtime import config as runtime_config
    if not runtime_config.is_config_secret(f"{NAMESPACE}:{OFFSITE_SECRET_KEY}"):
        raise SystemExit(f"{NAMESPACE}:{OFFSITE_SECRET_KEY} holds credentials but is stored in plain text in "
                         f"Pulumi.{pulumi.get_stack()}.yaml: remove it (pulumi config rm {NAMESPACE}:"
                         f"{OFFSITE_SECRET_KEY}) and set it again with --secret")
    values, problems = offsite_secrets_of(offsite_raw)
    if problems:
        raise SystemExit("invalid stack config:\n  - " + "\n  - ".join(problems))
    if spec.etcd.backup.offsite is None:
        pulumi.log.warn(f"{NAMESPACE}:{OFFSITE_SECRET_KEY} is set but {NAMESPACE}:etcd.backup.offsite is not: "
                        "no snapshot leaves the members")
    offsite_secrets = pulumi.Output.secret(values)

cluster = Cluster("hakube", ClusterArgs(spec=spec, ssh_private_key=ssh_private_key,
                                        ssh_previous_private_key=ssh_previous_key,
                                        offsite_secrets=offsite_secrets))

pulumi.export("summary", cluster.summary)
pulumi.export("vip", cluster.vip)
pulumi.export("apiServerEndpoint", f"https://{spec.kubernetes.endpoint}")
pulumi.export("nodeIps", cluster.node_ips)
pulumi.export("etcdEndpoints", cluster.etcd.endpoints)
pulumi.export("etcdCaCert", cluster.pki.ca_cert_pem)
pulumi.export("etcdctlEnv", cluster.etcd.etcdctl_env)
if cluster.etcd.latest_snapshot:
    pulumi.export("etcdLatestSnapshot", {
        "path": cluster.etcd.latest_snapshot, "onEachOf": [n.name for n in spec.topology.etcd],
        "calendar": spec.etcd.backup.calendar, "retention": spec.etcd.backup.retention,
        **({"offsite": {"url": offsite_url(spec.etcd.backup.offsite), "retention": spec.etcd.backup.offsite.retention,
                        "copiedBy": "the member leading the cluster at each snapshot"}}
           if spec.etcd.backup.offsite else {})})
pulumi.export("convergeTargets", cluster.converge_targets)
pulumi.export("rebuildTargets", cluster.rebuild_targets)
pulumi.export("pendingRebuilds", cluster.pending_rebuilds)
# Image volumes are kept by `pulumi destroy` (nodes' disks are overlays on
# them); `make destroy` removes the ones named here afterwards.
pulumi.export("imageVolumes", {"uri": spec.libvirt.uri, "pool": spec.libvirt.pool,
                               "prefix": spec.image.volume_prefix})
if spec.monitoring.enabled:
    # for the Prometheus of monitoring.sources: paste under scrape_configs:, load as a rule file
    pulumi.export("prometheusScrapeConfigs", monitoring.scrape_configs_yaml(spec))
    pulumi.export("prometheusRules", monitoring.rules_yaml())
pulumi.export("sshUser", spec.ssh.user)
pulumi.export("sshPrivateKey", cluster.ssh.private_key)
pulumi.export("sshCommands", cluster.ssh_commands)
pulumi.export("knownHosts", cluster.known_hosts)
if spec.kubernetes.bootstrap:
    pulumi.export("kubeconfig", cluster.control_plane.kubeconfig)
else:
    pulumi.export("nextSteps", cluster.control_plane.next_steps)
