# The cluster gate: every configured member started, a voter and healthy
# (members the membership step is about to remove may still be listed).
# An active alarm (NOSPACE) fails it, named.
if wait_cluster_healthy "$WAIT_TRIES"; then
  ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc endpoint status -w table
  etcdctl_hc member list -w table
  exit 0
fi
ENDPOINTS="$ETCD_ENDPOINTS" etcdctl_hc endpoint status -w table >&2 || true
[ -n "$(alarms)" ] || journal_tail 40      # an alarm was named above; keep it in sight
exit 1
