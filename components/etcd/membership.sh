# Remove the members the stack no longer configures, one at a time, before
# their VMs go (Pulumi deletes removed resources only after every update).
# Refused, with nothing removed, when the cluster is unhealthy or when the
# change removes more members in one run than the cluster can lose and keep
# its quorum: were those VMs to vanish before `member remove`, the rest must
# still hold a majority.
if ! wait_cluster_healthy "$WAIT_TRIES"; then
  echo "membership: not changing the membership of an unhealthy cluster" >&2
  exit 1
fi
table=$(member_table)
extra=$(awk 'NR == FNR { want[$0]; next } !($4 in want)' <(configured_peer_urls) - <<<"$table")
total=$(grep -c . <<<"$table")
if [ -z "$extra" ]; then
  echo "membership: the cluster's $total members are exactly the configured ones"
  wait_cluster_healthy "$WAIT_TRIES" exact
  exit 0
fi
n_extra=$(grep -c . <<<"$extra")
tolerance=$(((total - 1) / 2))
if [ "$n_extra" -gt "$tolerance" ]; then
  echo "membership: refusing to remove $n_extra of $total members in one run:" >&2
  awk '{ print "  " $3 " " $4 }' <<<"$extra" >&2
  echo "a $total-member cluster keeps its quorum after losing at most $tolerance. Lower" >&2
  echo "hakube:nodes.etcd.count by at most $tolerance, run pulumi up, and repeat. Nothing was removed." >&2
  exit 1
fi
first_id=$(awk -v u="$MEMBER_PEER_URL" '$4 == u { print $1 }' <<<"$table")
while read -r id _ name peer _; do
  t0=$(date +%s%3N)
  # (an endpoint that does not answer is no leader: never let it end this script)
  leader=$({ ENDPOINTS="$ETCD_ENDPOINTS,${peer%:*}:2379" etcdctl_hc endpoint status -w json 2>/dev/null || true; } |
           etcd_decide leader)
  if [ "$leader" = "$id" ]; then
    # Hand leadership to a member that stays: one clean election, not a lost leader.
    ENDPOINTS="${peer%:*}:2379" etcdctl_hc move-leader "$first_id" >/dev/null
    echo "membership: leadership moved from $name to $MEMBER_NAME"
  fi
  ENDPOINTS="$ETCD_ENDPOINTS" reconfig member remove "$id" >/dev/null
  if ! wait_cluster_healthy "$WAIT_TRIES"; then
    echo "membership: the cluster did not settle after removing $name" >&2
    exit 1
  fi
  echo "membership: removed $name ($id, $peer) in $(($(date +%s%3N) - t0)) ms"
done <<<"$extra"
wait_cluster_healthy "$WAIT_TRIES" exact
echo "membership: now $(started_members | paste -sd' ')"
