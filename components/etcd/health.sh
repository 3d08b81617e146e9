# The cluster gate: every configured member started, healthy, and no other.
if wait_cluster_healthy "$WAIT_TRIES"; then
  ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc endpoint status -w table
  etcdctl_hc member list -w table
  exit 0
fi
ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc endpoint status -w table >&2 || true
journal_tail 40
exit 1
