# Restore, 2/4 (every member, once every member is stopped): a new data dir
# from the snapshot, with this member's name and peer URL, the full
# initial-cluster and a fresh cluster token; the old data dir is kept aside.
marker="$RESTORE_DIR/$RESTORE_SHA.done"
if [ -e "$marker" ]; then echo "already restored"; exit 0; fi
if systemctl is-active --quiet etcd; then echo "etcd still runs on $(hostname): not restoring" >&2; exit 1; fi
new="$ETCD_DATA_DIR.restoring"
rm -rf "$new"
if [ -x /usr/local/bin/etcdutl ]; then restore=(/usr/local/bin/etcdutl); else restore=(env ETCDCTL_API=3 /usr/local/bin/etcdctl); fi
# Revisions must never go back for a watcher (kube-apiserver, controllers,
# kubelets): the restored keyspace starts $RESTORE_BUMP_REVISION revisions
# past the snapshot's, all marked compacted, so every watch is cancelled and
# relists (etcd's recovery guide for Kubernetes). Same value on every member.
bump=()
if [ "$RESTORE_BUMP_REVISION" -gt 0 ]; then
  if "${restore[@]}" snapshot restore --help 2>&1 | grep -q -- '--bump-revision'; then
    bump=(--bump-revision "$RESTORE_BUMP_REVISION" --mark-compacted)
  else
    echo "warning: $("${restore[@]}" version 2>/dev/null | head -1) on $(hostname) has no --bump-revision" \
         "(etcd 3.6 has it): restored without it. The kube-apiservers restart with this restore, but" \
         "controllers and kubelets that watched past the snapshot's revision may miss events until" \
         "they relist: restart them, and upgrade etcd before the next restore." >&2
  fi
fi
"${restore[@]}" snapshot restore "$RESTORE_DIR/$RESTORE_SHA.db" --name "$MEMBER_NAME" \
  --initial-cluster "$ETCD_INITIAL_CLUSTER" --initial-cluster-token "$RESTORE_TOKEN" \
  --initial-advertise-peer-urls "$MEMBER_PEER_URL" --data-dir "$new" "${bump[@]}" >/dev/null
chown -R etcd:etcd "$new"
chmod 0700 "$new"
old="$ETCD_DATA_DIR.pre-restore-$(date -u +%Y%m%dT%H%M%SZ)"
if [ -d "$ETCD_DATA_DIR" ]; then
  mv "$ETCD_DATA_DIR" "$old"
  printf '%s\n' "$old" >"$RESTORE_DIR/$RESTORE_SHA.previous"     # abandon.sh puts it back
fi
mv "$new" "$ETCD_DATA_DIR"
echo "$(hostname): data dir restored from ${RESTORE_SHA:0:12}${bump:+, revision bumped by $RESTORE_BUMP_REVISION and compacted} (previous kept at $old)"
