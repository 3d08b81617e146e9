# PEM blocks arrive on stdin (never on a command line), one per entry of
# PEM_FILES ("path:mode:owner:group", in order); each file is written only if
# it differs, keys 0600.
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v dir="$work" '/^-----BEGIN / { n++ } n > 0 { print > (dir "/" n ".pem") }'
i=0
for entry in $PEM_FILES; do
  i=$((i + 1))
  IFS=: read -r path mode owner group <<<"$entry"
  [ -s "$work/$i.pem" ] || { echo "PEM bundle on stdin has no block for $path" >&2; exit 1; }
  install -d -m 0755 "$(dirname "$path")"
  put_file "$work/$i.pem" "$path" "$mode" "$owner:$group"
done
[ -s "$work/$((i + 1)).pem" ] && { echo "PEM bundle on stdin has more blocks than PEM_FILES" >&2; exit 1; }
[ "$CHANGED" = 1 ] && echo "certificates updated" || echo "certificates unchanged"
