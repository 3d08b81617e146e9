# Install the file on stdin at $DEST (only if it differs).
work=$(mktemp)
trap 'rm -f "$work"' EXIT
cat >"$work"
put_file "$work" "$DEST" "$MODE" "$OWNER"
[ "$CHANGED" = 1 ] || echo "$DEST unchanged"
