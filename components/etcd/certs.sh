# Certificates and keys arrive as PEM blocks on stdin (never on a command
# line); each is written only if it differs, keys 0600.
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v dir="$work" '/^-----BEGIN / { n++ } n > 0 { print > (dir "/" n ".pem") }'
i=0
for entry in $CERT_FILES; do
  i=$((i + 1))
  IFS=: read -r name mode owner <<<"$entry"
  [ -s "$work/$i.pem" ] || { echo "certificate bundle on stdin has no block for $name" >&2; exit 1; }
  put_file "$work/$i.pem" "$PKI_DIR/$name" "$mode" "$owner:$owner"
done
[ "$CHANGED" = 1 ] && echo "certificates updated" || echo "certificates unchanged"
