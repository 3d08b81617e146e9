# Install the file on stdin at each path in $DEST (only where it differs).
work=$(mktemp)
trap 'rm -f "$work"' EXIT
cat >"$work"
for dest in $DEST; do
  install -d -m 0755 "$(dirname "$dest")"
  put_file "$work" "$dest" "$MODE" "$OWNER"
done
[ "$CHANGED" = 1 ] || echo "$DEST unchanged"
