# Lost quorum (hakube:etcd.recover.from names this member): a one-member
# cluster from this member's own data, as etcd's disaster-recovery guide
# does it (`etcd --force-new-cluster`): same cluster and member IDs, every
# key this member had, every other member removed from the membership. The
# other members then come back one at a time by `make rebuild`, each joining
# as a learner (start.sh) and promoted.
#
# Refused unless it is safe to call the others gone: while any configured
# member answers a quorum read, nothing is touched. (A network partition
# looks the same from here as lost hosts: the README says to be sure the
# others are down or their data gone before setting the key.)
# Runs again after a failure: a one-member cluster of this member that
# answers is what this step makes, so it counts as done.
RECOVER_CONFIG=/etc/etcd/etcd.recover.yml
forget_force() { forget_config hakube-recover "$RECOVER_CONFIG"; }
healthy_local() { etcdctl_hc --command-timeout=3s endpoint health >/dev/null 2>&1; }
wait_healthy_local() {
  local i
  for ((i = 1; i <= WAIT_TRIES; i++)); do healthy_local && return 0; sleep 2; done
  return 1
}

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
t0=$(date +%s%3N)
systemctl stop etcd
kept="$ETCD_DATA_DIR.pre-recover-$(date -u +%Y%m%dT%H%M%SZ)"
cp -a "$ETCD_DATA_DIR" "$kept"
echo "etcd stopped on $MEMBER_NAME; its data copied to $kept first"
# --force-new-cluster, once: in a copy of the config (with --config-file
# etcd reads no flags), started by a runtime drop-in that goes right after.
{ grep -v '^force-new-cluster:' "$ETCD_CONFIG_FILE"; echo "force-new-cluster: true"; } >"$RECOVER_CONFIG.new"
chmod 0644 "$RECOVER_CONFIG.new" && mv -f "$RECOVER_CONFIG.new" "$RECOVER_CONFIG"
start_with_config hakube-recover "$RECOVER_CONFIG"
if ! systemctl start etcd || ! wait_healthy_local; then
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
rev=$(etcdctl_hc endpoint status -w json | grep -o '"revision":[0-9]*' | head -1 | cut -d: -f2)
echo "recovered in $(($(date +%s%3N) - t0)) ms: $MEMBER_NAME is a one-member cluster at revision $rev"
echo "Next: make rebuild NODE=<member> for each other member, one per run (each joins as a learner)."
