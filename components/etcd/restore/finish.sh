# Restore, 4/4 (every member, after the cluster health gate): mark this
# snapshot restored here and resume scheduled backups.
marker="$RESTORE_DIR/$RESTORE_SHA.done"
if [ ! -e "$marker" ]; then
  date -u +%FT%TZ >"$marker"
  rm -f "$RESTORE_DIR/$RESTORE_SHA.db"
fi
if systemctl cat hakube-etcd-backup.timer >/dev/null 2>&1; then systemctl start hakube-etcd-backup.timer; fi
echo "restore of ${RESTORE_SHA:0:12} complete on $(hostname)"
