# Install the systemd unit on stdin as $UNIT: verified with systemd-analyze
# before it replaces anything, then enabled; reloads systemd only on change.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/$UNIT"
if ! out=$(systemd-analyze verify "$work/$UNIT" 2>&1); then
  echo "systemd-analyze rejected $UNIT:" >&2
  echo "$out" >&2
  exit 1
fi
put_file "$work/$UNIT" "/etc/systemd/system/$UNIT" 0644 root:root
[ "$CHANGED" = 1 ] && systemctl daemon-reload
systemctl is-enabled --quiet "$UNIT" || systemctl enable --quiet "$UNIT"
echo "$UNIT installed and enabled"
