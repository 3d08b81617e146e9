# Install the systemd unit on stdin as $UNIT: verified with systemd-analyze
# before it replaces anything, then enabled; reloads systemd only on change.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked_stdin "$work/$UNIT" systemd-analyze verify
put_file "$work/$UNIT" "/etc/systemd/system/$UNIT" 0644 root:root
[ "$CHANGED" = 1 ] && systemctl daemon-reload
systemctl is-enabled --quiet "$UNIT" || systemctl enable --quiet "$UNIT"
echo "$UNIT installed and enabled"
