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
# Off-host (etcd.backup.offsite): the member that leads the cluster copies
# this snapshot, reads the copy back and compares its sha256, writes the hash
# next to it (NAME.sha256: what a restore pins), records it for `make status`,
# then deletes the oldest copies past the retention (all members' together).
if [ "${OFFSITE:-0}" = 1 ]; then
  status=$(ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert="$PKI_DIR/ca.crt" --cert="$PKI_DIR/healthcheck-client.crt" \
    --key="$PKI_DIR/healthcheck-client.key" --dial-timeout=5s --command-timeout=10s endpoint status -w json)
  me=$(grep -o '"member_id":[0-9]*' <<<"$status" | head -1 | cut -d: -f2)
  leader=$(grep -o '"leader":[0-9]*' <<<"$status" | head -1 | cut -d: -f2)
  if [ -z "$me" ] || [ "$me" != "$leader" ]; then
    echo "off-host: $(hostname) does not lead the cluster; the leader copies"
    exit 0
  fi
  rc=(rclone --config "$OFFSITE_DIR/rclone.conf" --contimeout 10s --timeout 300s --retries 3 --low-level-retries 5)
  sha=$(sha256sum "$BACKUP_DIR/$name" | cut -d' ' -f1)
  dest="offsite:$OFFSITE_PATH"
  "${rc[@]}" copyto "$BACKUP_DIR/$name" "$dest/$name"
  got=$("${rc[@]}" cat "$dest/$name" | sha256sum | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "off-host copy of $name failed its check: sha256 $got read back, $sha sent" >&2
    "${rc[@]}" deletefile "$dest/$name" || true
    exit 1
  fi
  printf '%s  %s\n' "$sha" "$name" | "${rc[@]}" rcat "$dest/$name.sha256"
  printf '%s %s %s\n' "$name" "$sha" "$(date +%s)" >"$BACKUP_DIR/offsite.last"
  echo "off-host copy $OFFSITE_URL/$name ok: sha256 $sha read back"
  "${rc[@]}" lsf --files-only --include 'etcd-*.db' "$dest" |
    awk '{ n = split($0, part, "-"); print part[n] "\t" $0 }' | sort -r | cut -f2 | tail -n +"$((OFFSITE_RETENTION + 1))" |
    while read -r old; do
      "${rc[@]}" deletefile "$dest/$old"
      "${rc[@]}" deletefile "$dest/$old.sha256" 2>/dev/null || true
      echo "off-host retention: deleted $old"
    done
fi
