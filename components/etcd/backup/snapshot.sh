# hakube: one etcd snapshot of this member, checked right after it is taken,
# then retention. Run by hakube-etcd-backup.service (its timer); a failed save
# or check fails the unit, loudly (journal, `systemctl --failed`).
umask 077
if ! systemctl is-active --quiet etcd; then
  echo "etcd is not running on $(hostname): no snapshot taken" >&2
  exit 1
fi
install -d -m 0700 -o root -g root "$BACKUP_DIR"
name="etcd-$(hostname)-$(date -u +%Y%m%dT%H%M%SZ).db"
part="$BACKUP_DIR/.$name.part"
trap 'rm -f "$part"' EXIT
ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints=https://127.0.0.1:2379 \
  --cacert="$PKI_DIR/ca.crt" --cert="$PKI_DIR/healthcheck-client.crt" \
  --key="$PKI_DIR/healthcheck-client.key" --dial-timeout=5s --command-timeout=120s \
  snapshot save "$part" >/dev/null
# The check: the snapshot's own hash and revision, read back by etcd's tool.
# Revision 0 is a cluster nobody has written to yet (practice mode before
# kubeadm init): a valid, empty snapshot, not a failed one.
if [ -x /usr/local/bin/etcdutl ]; then
  status=$(/usr/local/bin/etcdutl snapshot status "$part" -w json)
else
  status=$(ETCDCTL_API=3 /usr/local/bin/etcdctl snapshot status "$part" -w json)
fi
if ! grep -Eq '"hash":[1-9][0-9]*' <<<"$status" || ! grep -Eq '"revision":[0-9]+' <<<"$status"; then
  echo "snapshot $name failed its check: $status" >&2
  exit 1
fi
mv "$part" "$BACKUP_DIR/$name"
ln -sfn "$name" "$BACKUP_DIR/latest.db"
echo "snapshot $BACKUP_DIR/$name ok: $status"
# Retention: keep the newest $BACKUP_RETENTION, delete the oldest first.
ls -1 "$BACKUP_DIR"/etcd-*.db | sort -r | tail -n +"$((BACKUP_RETENTION + 1))" | while read -r old; do
  rm -f "$old"
  echo "retention: deleted $old"
done
