# hakube's own exporter on this node (monitoring.sources set): the probe
# (stdin, compiled first) at /usr/local/lib/hakube/probe.py, a socket unit
# on the node's address and its per-connection service, both verified by
# systemd first; the socket restarted when anything changed. METRICS=0
# (monitoring off): all of it removed again.
socket=hakube-metrics.socket
service=hakube-metrics@.service
if [ "$METRICS" = 0 ]; then
  cat >/dev/null
  if [ -e "/etc/systemd/system/$socket" ]; then
    systemctl disable --now --quiet "$socket" || true
    rm -f "/etc/systemd/system/$socket" "/etc/systemd/system/$service" /usr/local/lib/hakube/probe.py
    systemctl daemon-reload
    echo "hakube's exporter removed from $(hostname)"
  fi
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked_stdin "$work/probe.py" python3 -m py_compile
put_file "$work/probe.py" /usr/local/lib/hakube/probe.py 0644 root:root
printf '%s\n' "$METRICS_SOCKET" >"$work/$socket"
printf '%s\n' "$METRICS_SERVICE" >"$work/$service"
if ! out=$(systemd-analyze verify "$work/$socket" "$work/$service" 2>&1); then
  echo "systemd rejected hakube's exporter units; nothing replaced:" >&2
  echo "$out" >&2
  exit 1
fi
for unit in "$socket" "$service"; do
  put_file "$work/$unit" "/etc/systemd/system/$unit" 0644 root:root
done
enable_and_start "$socket"
if [ "$CHANGED" = 1 ]; then
  echo "hakube's exporter listens on $METRICS_LISTEN for $METRICS_SOURCES"
else
  echo "hakube's exporter unchanged"
fi
