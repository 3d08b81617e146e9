# Rolling restart of this member after its certs, config, unit or binary
# changed. Never costs quorum: refuses to start while the cluster is degraded,
# and returns only once the whole cluster is healthy again.
if ! wait_cluster_healthy "$WAIT_TRIES"; then
  echo "not restarting etcd on $(hostname): the cluster is not healthy, and taking a member down could lose quorum" >&2
  exit 1
fi
systemctl restart etcd
if ! wait_cluster_healthy "$WAIT_TRIES"; then
  journal_tail 40
  exit 1
fi
echo "etcd on $(hostname) restarted; cluster healthy"
