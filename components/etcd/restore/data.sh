# Restore, 2/4 (every member, once every member is stopped): a new data dir
# from the snapshot, with this member's name and peer URL, the full
# initial-cluster and a fresh cluster token; the old data dir is kept aside.
marker="$RESTORE_DIR/$RESTORE_SHA.done"
if [ -e "$marker" ]; then echo "already restored"; exit 0; fi
if systemctl is-active --quiet etcd; then echo "etcd still runs on $(hostname): not restoring" >&2; exit 1; fi
new="$ETCD_DATA_DIR.restoring"
rm -rf "$new"
if [ -x /usr/local/bin/etcdutl ]; then restore=(/usr/local/bin/etcdutl); else restore=(env ETCDCTL_API=3 /usr/local/bin/etcdctl); fi
"${restore[@]}" snapshot restore "$RESTORE_DIR/$RESTORE_SHA.db" --name "$MEMBER_NAME" \
  --initial-cluster "$ETCD_INITIAL_CLUSTER" --initial-cluster-token "$RESTORE_TOKEN" \
  --initial-advertise-peer-urls "$MEMBER_PEER_URL" --data-dir "$new" >/dev/null
chown -R etcd:etcd "$new"
chmod 0700 "$new"
old="$ETCD_DATA_DIR.pre-restore-$(date -u +%Y%m%dT%H%M%SZ)"
if [ -d "$ETCD_DATA_DIR" ]; then
  mv "$ETCD_DATA_DIR" "$old"
  printf '%s\n' "$old" >"$RESTORE_DIR/$RESTORE_SHA.previous"     # abandon.sh puts it back
fi
mv "$new" "$ETCD_DATA_DIR"
echo "$(hostname): data dir restored from ${RESTORE_SHA:0:12} (previous kept at $old)"
