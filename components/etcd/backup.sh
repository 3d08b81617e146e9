# Scheduled snapshots: the snapshot script (stdin), its service and timer
# (verified by systemd first), the calendar checked by systemd itself; the
# timer enabled and running, restarted when anything changed.
if [ "$BACKUP_ENABLED" = 0 ]; then
  cat >/dev/null
  if [ -e /etc/systemd/system/hakube-etcd-backup.timer ]; then
    systemctl disable --now --quiet hakube-etcd-backup.timer || true
    rm -f /etc/systemd/system/hakube-etcd-backup.{timer,service} /usr/local/sbin/hakube-etcd-backup
    systemctl daemon-reload
    echo "backup timer removed (snapshots in $BACKUP_DIR are kept)"
  fi
  exit 0
fi
if ! out=$(systemd-analyze calendar "$BACKUP_CALENDAR" 2>&1); then
  echo "hakube:etcd.backup.calendar: systemd does not accept '$BACKUP_CALENDAR':" >&2
  echo "$out" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked_stdin "$work/hakube-etcd-backup" bash -n
put_file "$work/hakube-etcd-backup" /usr/local/sbin/hakube-etcd-backup 0755 root:root
printf '%s\n' "$BACKUP_SERVICE" | checked_stdin "$work/hakube-etcd-backup.service" systemd-analyze verify
printf '%s\n' "$BACKUP_TIMER" | checked_stdin "$work/hakube-etcd-backup.timer" systemd-analyze verify
for unit in hakube-etcd-backup.service hakube-etcd-backup.timer; do
  put_file "$work/$unit" "/etc/systemd/system/$unit" 0644 root:root
done
if [ "$CHANGED" = 1 ]; then
  systemctl daemon-reload
  systemctl enable --quiet hakube-etcd-backup.timer
  systemctl restart hakube-etcd-backup.timer
  echo "backup timer installed: $(systemctl show -p NextElapseUSecRealtime --value hakube-etcd-backup.timer)"
else
  systemctl is-enabled --quiet hakube-etcd-backup.timer || systemctl enable --quiet hakube-etcd-backup.timer
  systemctl is-active --quiet hakube-etcd-backup.timer || systemctl start hakube-etcd-backup.timer
  echo "backup timer unchanged"
fi
