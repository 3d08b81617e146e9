# Lost quorum (hakube:etcd.recover.from names this member): a one-member
# cluster from this member's own data, as etcd's disaster-recovery guide
# does it (`etcd --force-new-cluster`): same cluster and member IDs, every
# key this member had, every other member removed from the membership. The
# other members then come back one at a time by `make rebuild`, each joining
# as a learner (start.sh) and promoted. When etcd refuses to force a new
# cluster from this member's WAL (below), the one-member cluster is made from
# its database file instead: the same keys and revision, a new cluster ID.
#
# Refused unless it is safe to call the others gone: while any configured
# member answers a quorum read, nothing is touched. (A network partition
# looks the same from here as lost hosts: the README says to be sure the
# others are down or their data gone before setting the key.)
# Runs again after a failure: a one-member cluster of this member that
# answers is what this step makes, so it counts as done.
RECOVER_CONFIG=/etc/etcd/etcd.recover.yml
# Names the copy a recovery from the database file works from, until it is done.
FROM_DB=/etc/etcd/hakube-recover-from-db
forget_force() { forget_config hakube-recover "$RECOVER_CONFIG"; }
healthy_local() { etcdctl_hc --command-timeout=3s endpoint health >/dev/null 2>&1; }
wait_healthy_local() {
  local i
  for ((i = 1; i <= WAIT_TRIES; i++)); do healthy_local && return 0; sleep 2; done
  return 1
}
# A member that crashed uncleanly can have a database (bbolt) that applied
# entries its WAL no longer holds: only a HardState whose commit index rose
# goes unsynced. --force-new-cluster then commits past the WAL's end. etcd
# 3.5.22-3.5.35, 3.6.1-3.6.16 and 3.7.0-3.7.3 panic ("state.commit N is out
# of range") after appending to the WAL, which no later start can read
# ("wal: slice bounds out of range"); later releases refuse ("exceeds the last
# WAL entry index", etcd #22686). Either way the WAL is of no use, and the
# database holds every entry the member applied.
WAL_GAP='state\.commit [0-9]+ is out of range \[[0-9]+, [0-9]+\]|adjusted commit index [0-9]+ exceeds the last WAL entry index [0-9]+|wal: slice bounds out of range'
# forced_start SINCE -> 0 one-member cluster answers, 2 the WAL gap, 1 other failure
forced_start() {
  local i
  for ((i = 1; i <= WAIT_TRIES; i++)); do
    healthy_local && return 0
    if journalctl -u etcd --since "@$1" --no-pager -o cat 2>/dev/null | grep -Eq "$WAL_GAP"; then
      return 2
    fi
    sleep 2
  done
  return 1
}
# recover_from_db KEPT -- this member's data, made anew from the database file
# of KEPT (the copy taken before any forced start): a one-member cluster of
# every key the member had applied, at the same revision. Its cluster ID is
# new (another cluster token), so a lost member that comes back with its old
# data is refused instead of joining. Runs again after a failure: FROM_DB
# names KEPT until etcd answers.
recover_from_db() {
  local kept=$1 restore new="$ETCD_DATA_DIR.recovering"
  printf '%s\n' "$kept" >"$FROM_DB"
  systemctl stop etcd
  forget_force
  if [ -x /usr/local/bin/etcdutl ]; then restore=(/usr/local/bin/etcdutl); else restore=(env ETCDCTL_API=3 /usr/local/bin/etcdctl); fi
  rm -rf "$ETCD_DATA_DIR" "$new"
  "${restore[@]}" snapshot restore "$kept/member/snap/db" --skip-hash-check --name "$MEMBER_NAME" \
    --initial-cluster "$MEMBER_NAME=$MEMBER_PEER_URL" --initial-advertise-peer-urls "$MEMBER_PEER_URL" \
    --initial-cluster-token "$RECOVER_TOKEN" --data-dir "$new" >/dev/null
  chown -R etcd:etcd "$new"
  chmod 0700 "$new"
  mv "$new" "$ETCD_DATA_DIR"
  systemctl start etcd
  if ! wait_healthy_local; then
    echo "etcd on $MEMBER_NAME did not come up from the database of $kept:" >&2
    journal_tail 40
    exit 1
  fi
  rm -f "$FROM_DB"
  echo "etcd on $MEMBER_NAME was made anew from the database file of $kept (etcd refused its WAL)"
}
done_message() {
  local rev
  rev=$(etcdctl_hc endpoint status -w json | grep -o '"revision":[0-9]*' | head -1 | cut -d: -f2)
  echo "recovered in $(($(date +%s%3N) - t0)) ms: $MEMBER_NAME is a one-member cluster at revision $rev"
  echo "Next: make rebuild NODE=<member> for each other member, one per run (each joins as a learner)."
}

t0=$(date +%s%3N)
if [ -s "$FROM_DB" ]; then
  recover_from_db "$(cat "$FROM_DB")"
  done_message
  exit 0
fi

if ! has_data; then
  echo "refusing to recover from $MEMBER_NAME: it has no etcd data ($ETCD_DATA_DIR). Name a member whose" >&2
  echo "data survived in hakube:etcd.recover.from, or, with none left, restore a snapshot (etcd.restore)." >&2
  exit 1
fi
if systemctl is-active --quiet etcd && healthy_local; then
  table=$(member_table)
  if [ "$(wc -l <<<"$table")" = 1 ] && awk -v u="$MEMBER_PEER_URL" '$4 == u' <<<"$table" | grep -q .; then
    forget_force
    echo "etcd on $MEMBER_NAME is a one-member cluster that answers: recovered."
    echo "Next: make rebuild NODE=<member> for each other member, one per run (each joins as a learner)."
    exit 0
  fi
  echo "refusing to recover: a quorum answers at $MEMBER_NAME (members: $(awk '{ print $3 }' <<<"$table" | paste -sd' '))." >&2
  echo "Nothing to recover; remove hakube:etcd.recover from the stack config." >&2
  exit 1
fi
for ep in ${ETCD_ENDPOINTS//,/ }; do
  [ "$ep" = "$MEMBER_CLIENT_URL" ] && continue
  if ENDPOINTS=$ep etcdctl_hc --dial-timeout=1s --command-timeout=3s endpoint health >/dev/null 2>&1; then
    echo "refusing to recover from $MEMBER_NAME: a quorum answers at $ep. Nothing is lost; bring" >&2
    echo "$MEMBER_NAME back (make converge) and remove hakube:etcd.recover from the stack config." >&2
    exit 1
  fi
done

# the data dir is copied aside first: is there room for the copy?
need=$(du -sb "$ETCD_DATA_DIR" | cut -f1)
free=$(df -B1 --output=avail "$(dirname "$ETCD_DATA_DIR")" | tail -1 | tr -d ' ')
if [ "$need" -ge "$free" ]; then
  echo "not recovering yet: a copy of $ETCD_DATA_DIR ($need bytes) does not fit in the $free bytes free" >&2
  echo "on $(dirname "$ETCD_DATA_DIR"); free some space on $MEMBER_NAME and run pulumi up again (nothing was stopped)" >&2
  exit 1
fi
systemctl stop etcd
kept="$ETCD_DATA_DIR.pre-recover-$(date -u +%Y%m%dT%H%M%SZ)"
cp -a "$ETCD_DATA_DIR" "$kept"
echo "etcd stopped on $MEMBER_NAME; its data copied to $kept first"
# --force-new-cluster, once: in a copy of the config (with --config-file
# etcd reads no flags), started by a runtime drop-in that goes right after.
{ grep -v '^force-new-cluster:' "$ETCD_CONFIG_FILE"; echo "force-new-cluster: true"; } >"$RECOVER_CONFIG.new"
chmod 0644 "$RECOVER_CONFIG.new" && mv -f "$RECOVER_CONFIG.new" "$RECOVER_CONFIG"
start_with_config hakube-recover "$RECOVER_CONFIG"
since=$(date +%s)
systemctl start etcd || true
forced_start "$since" && outcome=0 || outcome=$?
if [ "$outcome" = 2 ]; then
  echo "etcd on $MEMBER_NAME refused --force-new-cluster: its database applied entries its WAL lost (an unclean stop):"
  journalctl -u etcd --since "@$since" --no-pager -o cat 2>/dev/null | grep -oE "$WAL_GAP" |
    awk '!seen[$0]++' | sed 's/^/  etcd: /'
  recover_from_db "$kept"
  done_message
  exit 0
fi
if [ "$outcome" != 0 ]; then
  echo "etcd on $MEMBER_NAME did not come up as a one-member cluster:" >&2
  journal_tail 40
  forget_force
  exit 1
fi
forget_force
systemctl restart etcd
if ! wait_healthy_local; then
  echo "etcd on $MEMBER_NAME did not come back with its own config after the recovery:" >&2
  journal_tail 40
  exit 1
fi
done_message
