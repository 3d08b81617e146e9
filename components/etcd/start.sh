# Start this member, or join it to the running cluster. Members run this one
# after another; no step here waits for a quorum that needs a later member.
#  - data on disk: the member exists; start it if stopped (the cluster gate waits).
#  - empty, and a healthy cluster answers: join it. Add this member as a learner
#    (re-using one a failed run added; replacing a stale entry of a re-created
#    VM), start it with initial-cluster-state existing and the live membership,
#    promote it once it has caught up with the leader.
#  - empty, no quorum anywhere yet: bootstrap with the config file (state new),
#    but only when every member that answers on its peer port is bootstrapping
#    this same membership: never found a second cluster next to a live one.
JOIN_CONFIG=/etc/etcd/etcd.join.yml
forget_join() { forget_config hakube-join "$JOIN_CONFIG"; }
# promote_if_learner ENDPOINT ID -- retried until the learner is in sync
promote_if_learner() {
  local ep=$1 id=$2 i out
  for ((i = 1; i <= WAIT_TRIES; i++)); do
    member_table_at "$ep" | awk -v id="$id" '$1 == id && $5 == "true" { found = 1 } END { exit !found }' || return 0
    if out=$(ENDPOINTS=$ep etcdctl_hc member promote "$id" 2>&1); then
      echo "promoted $MEMBER_NAME ($id) to a voting member after $((i * 2))s"
      return 0
    fi
    sleep 2
  done
  echo "learner $MEMBER_NAME ($id) did not catch up in $((WAIT_TRIES * 2))s: $out" >&2
  return 1
}
member_table_at() { ENDPOINTS=$1 member_table; }
listening() {  # listening URL -- a TCP connect within 1 s (no etcdctl dial retries)
  local hp=${1#*://}
  timeout 1 bash -c "exec 3<>/dev/tcp/${hp%:*}/${hp##*:}" 2>/dev/null
}
healthy_other() {  # the first other member's endpoint that answers a quorum read
  local ep
  for ep in ${ETCD_ENDPOINTS//,/ }; do
    [ "$ep" = "$MEMBER_CLIENT_URL" ] && continue
    listening "$ep" || continue
    if ENDPOINTS=$ep etcdctl_hc --command-timeout=3s endpoint health >/dev/null 2>&1; then
      echo "$ep"; return 0
    fi
  done
  return 1
}

if has_data; then
  forget_join
  if systemctl is-active --quiet etcd; then
    echo "etcd member $MEMBER_NAME already running"
    if ep=$(healthy_other); then
      id=$(member_table_at "$ep" | awk -v u="$MEMBER_PEER_URL" '$4 == u { print $1 }')
      [ -n "$id" ] && promote_if_learner "$ep" "$id"
    fi
  else
    systemctl start --no-block etcd
    echo "etcd member $MEMBER_NAME started (its data was on disk)"
  fi
  exit 0
fi

if ! ep=$(healthy_other); then
  # No quorum among the others: a fresh cluster is bootstrapping, or the
  # cluster is down. Their peer ports tell which.
  answered=""
  for peer in $(configured_peer_urls); do
    [ "$peer" = "$MEMBER_PEER_URL" ] && continue
    listening "$peer" || continue
    # HTTP/1.1: etcd's peer listener closes an HTTP/2 stream without an answer
    body=$(curl -sf --http1.1 --max-time 3 --cacert "$PKI_DIR/peer-ca.crt" --cert "$PKI_DIR/peer.crt" \
           --key "$PKI_DIR/peer.key" "$peer/members" 2>/dev/null) || continue
    answered="$answered $peer"
    if ! grep -qF "\"$MEMBER_PEER_URL\"" <<<"$body"; then
      echo "refusing to start $MEMBER_NAME: the cluster at $peer exists without this member and has no quorum." >&2
      echo "Bring its members back (the health gate of the next pulumi up shows which) before adding one." >&2
      exit 1
    fi
    # A cluster decides its version once its first quorum forms, and a member
    # keeps it across restarts: a peer that knows it belongs to a cluster
    # that has run and lost its quorum. An empty member started in place of
    # a lost one would vote with no memory of what it acknowledged: refuse.
    version=$(curl -sf --http1.1 --max-time 3 --cacert "$PKI_DIR/peer-ca.crt" --cert "$PKI_DIR/peer.crt" \
              --key "$PKI_DIR/peer.key" "$peer/version" 2>/dev/null || true)
    if grep -q '"etcdcluster":"[0-9]' <<<"$version"; then
      echo "refusing to start $MEMBER_NAME with no data: the cluster at $peer has run ($version)" >&2
      echo "and has no quorum now, so its other members are down or lost. If they come back, run" >&2
      echo "pulumi up again. If they are gone for good, recover: set hakube:etcd.recover.from to a member" >&2
      echo "whose data survived, run pulumi up, then rebuild the others one per run (README 'Lost quorum')." >&2
      exit 1
    fi
  done
  if [ -z "$answered" ] && [ "$MEMBER_NAME" != "$FIRST_MEMBER" ]; then
    echo "refusing to start $MEMBER_NAME with no data: no other member answers on its peer port," >&2
    echo "so there is no cluster to join and $FIRST_MEMBER (which bootstraps a new one) is not up." >&2
    exit 1
  fi
  systemctl start --no-block etcd
  for ((i = 1; i <= WAIT_TRIES; i++)); do
    if ss -Hltn "sport = :${MEMBER_PEER_URL##*:}" | grep -q .; then
      echo "etcd member $MEMBER_NAME bootstrapping a new cluster (peers answering:${answered:- none})"
      exit 0
    fi
    sleep 1
  done
  echo "etcd on $(hostname) did not open its peer port in ${WAIT_TRIES}s" >&2
  journal_tail 40
  exit 1
fi

table=$(member_table_at "$ep")
mine=$(awk -v u="$MEMBER_PEER_URL" '$4 == u' <<<"$table")
if [ -n "$mine" ] && [ "$(cut -d' ' -f2 <<<"$mine")" = started ]; then
  id=$(cut -d' ' -f1 <<<"$mine")
  echo "the cluster lists $MEMBER_NAME ($id) as started, but this host has no data (a re-created VM):"
  echo "removing the stale member and joining afresh"
  ENDPOINTS=$ep reconfig member remove "$id"
  table=$(member_table_at "$ep") mine=""
fi
if [ -z "$mine" ]; then
  if awk '$2 == "unstarted" || $5 == "true"' <<<"$table" | grep -q .; then
    echo "refusing to add $MEMBER_NAME: another member is still joining:" >&2
    echo "$table" >&2
    exit 1
  fi
  ENDPOINTS=$ep reconfig member add "$MEMBER_NAME" --peer-urls="$MEMBER_PEER_URL" --learner >/dev/null
  table=$(member_table_at "$ep")
  mine=$(awk -v u="$MEMBER_PEER_URL" '$4 == u' <<<"$table")
  echo "added $MEMBER_NAME as a learner ($(cut -d' ' -f1 <<<"$mine"))"
fi
id=$(cut -d' ' -f1 <<<"$mine") learner=$(cut -d' ' -f5 <<<"$mine")
live_urls=$(awk '{ print $4 }' <<<"$table" | sort | paste -sd,)
configured_urls=$(configured_peer_urls | paste -sd,)

if [ "$learner" = false ] && [ "$live_urls" = "$configured_urls" ]; then
  # A bootstrap member whose peers formed the quorum first: the config file
  # (state new, the same initial cluster) is exactly what it needs.
  systemctl start --no-block etcd
  echo "etcd member $MEMBER_NAME starting into the cluster it was bootstrapped with"
  exit 0
fi

# Join: the live membership as the initial cluster, state existing.
initial=$(awk -v me="$MEMBER_NAME" -v u="$MEMBER_PEER_URL" -v cfg="$ETCD_INITIAL_CLUSTER" '
  BEGIN { n = split(cfg, kv, ","); for (i = 1; i <= n; i++) { split(kv[i], p, "="); name[p[2]] = p[1] } }
  { nm = ($4 == u) ? me : ($3 != "-" ? $3 : (($4 in name) ? name[$4] : "member-" $1)); out = out (out ? "," : "") nm "=" $4 }
  END { print out }' <<<"$table")
sed -e "s|^initial-cluster: .*|initial-cluster: $initial|" \
    -e "s|^initial-cluster-state: .*|initial-cluster-state: existing|" "$ETCD_CONFIG_FILE" > "$JOIN_CONFIG.new"
grep -qx "initial-cluster: $initial" "$JOIN_CONFIG.new" && grep -qx "initial-cluster-state: existing" "$JOIN_CONFIG.new" \
  || { echo "could not derive the join config from $ETCD_CONFIG_FILE" >&2; exit 1; }
chmod 0644 "$JOIN_CONFIG.new" && mv -f "$JOIN_CONFIG.new" "$JOIN_CONFIG"
start_with_config hakube-join "$JOIN_CONFIG"
t0=$(date +%s)
systemctl start --no-block etcd
echo "joining $MEMBER_NAME to the cluster: initial-cluster $initial (existing)"
if [ "$learner" = true ] && ! promote_if_learner "$ep" "$id"; then
  journal_tail 40
  if ! has_data; then
    systemctl stop etcd; forget_join
    echo "nothing of this member was written; the next pulumi up joins it again" >&2
  fi
  exit 1
fi
for ((i = 1; i <= WAIT_TRIES; i++)); do
  if etcdctl_hc endpoint health >/dev/null 2>&1; then
    forget_join
    echo "etcd member $MEMBER_NAME joined in $(($(date +%s) - t0))s and serves"
    exit 0
  fi
  sleep 2
done
echo "etcd member $MEMBER_NAME joined but is not healthy after $((WAIT_TRIES * 2))s" >&2
journal_tail 40
exit 1
