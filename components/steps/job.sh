# A scheduled job of this member ($JOB): its script (stdin, `bash -n` first),
# service and timer (verified by systemd first), the calendar checked by
# systemd itself; the timer enabled and running, restarted when anything
# changed. Disabled in config: timer, service and script removed.
if [ "$JOB_ENABLED" = 0 ]; then
  cat >/dev/null
  if [ -e "/etc/systemd/system/$JOB.timer" ]; then
    systemctl disable --now --quiet "$JOB.timer" || true
    rm -f "/etc/systemd/system/$JOB.timer" "/etc/systemd/system/$JOB.service" "/usr/local/sbin/$JOB"
    systemctl daemon-reload
    echo "$JOB timer removed ($JOB_DISABLED_NOTE)"
  fi
  exit 0
fi
if ! out=$(systemd-analyze calendar "$JOB_CALENDAR" 2>&1); then
  echo "$JOB_CONFIG_KEY.calendar: systemd does not accept '$JOB_CALENDAR':" >&2
  echo "$out" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked_stdin "$work/$JOB" bash -n
put_file "$work/$JOB" "/usr/local/sbin/$JOB" 0755 root:root
printf '%s\n' "$JOB_SERVICE" | checked_stdin "$work/$JOB.service" systemd-analyze verify
printf '%s\n' "$JOB_TIMER" | checked_stdin "$work/$JOB.timer" systemd-analyze verify
for unit in "$JOB.service" "$JOB.timer"; do
  put_file "$work/$unit" "/etc/systemd/system/$unit" 0644 root:root
done
enable_and_start "$JOB.timer"
if [ "$CHANGED" = 1 ]; then
  echo "$JOB timer installed: $(systemctl show -p NextElapseUSecRealtime --value "$JOB.timer")"
else
  echo "$JOB timer unchanged"
fi
