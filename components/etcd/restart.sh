# Rolling restart of this member after its certs, config, unit or binary
# changed. Never costs quorum: refuses to start while the cluster is degraded,
# and returns only once the whole cluster is healthy again, this member
# serving the configured version.
if ! wait_cluster_healthy "$WAIT_TRIES"; then
  echo "not restarting etcd on $(hostname): the cluster is not healthy, and taking a member down could lose quorum" >&2
  exit 1
fi
t0=$(date +%s%3N)
systemctl restart etcd
if ! wait_cluster_healthy "$WAIT_TRIES"; then
  journal_tail 40
  exit 1
fi
running=$(etcdctl_hc endpoint status | awk -F', ' '{ print $3 }')
if [ "$running" != "$ETCD_VERSION" ]; then
  echo "etcd on $(hostname) restarted but serves $running, not $ETCD_VERSION" >&2
  exit 1
fi
echo "etcd $running on $(hostname) restarted in $(($(date +%s%3N) - t0)) ms; cluster healthy"
