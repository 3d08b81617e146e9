# Restore, 1/4 (every member): the snapshot copied here must be the named one;
# then stop the backup timer and etcd. Nothing happens on a member where this
# snapshot's restore already completed (its marker exists).
marker="$RESTORE_DIR/$RESTORE_SHA.done"
if [ -e "$marker" ]; then
  rm -f "$RESTORE_UPLOAD"
  echo "snapshot ${RESTORE_SHA:0:12} already restored on $(hostname)"
  exit 0
fi
install -d -m 0700 "$RESTORE_DIR"
if [ -e "$RESTORE_UPLOAD" ]; then mv -f "$RESTORE_UPLOAD" "$RESTORE_DIR/$RESTORE_SHA.db"; fi
if ! echo "$RESTORE_SHA  $RESTORE_DIR/$RESTORE_SHA.db" | sha256sum -c --status; then
  echo "the snapshot on $(hostname) is missing or is not ${RESTORE_SHA:0:12}...: not restoring" >&2
  exit 1
fi
chmod 0600 "$RESTORE_DIR/$RESTORE_SHA.db"
systemctl stop hakube-etcd-backup.timer 2>/dev/null || true
systemctl stop etcd
echo "etcd stopped on $(hostname) for the restore of ${RESTORE_SHA:0:12}"
