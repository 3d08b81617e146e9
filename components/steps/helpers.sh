# Install hakube's shell helpers (stdin: "#=== hakube-lib NAME" sections) in
# $LIB_DIR, where every step sources them. Each is checked by `bash -n` before
# it replaces the one in use; unchanged files are left alone. Runs before any
# other step of this node; needs nothing but bash and coreutils.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v dir="$work" '
  /^#=== hakube-lib [A-Za-z0-9_.-]+$/ { out = dir "/" $3; printf "" > out; next }
  out == "" { print "helpers: stdin does not start with a #=== hakube-lib line" > "/dev/stderr"; exit 1 }
  { print >> out }' || exit 1
install -d -m 0755 "$LIB_DIR"
changed=""
for file in "$work"/*; do
  name=$(basename "$file")
  if ! out=$(bash -n "$file" 2>&1); then
    echo "helper $name does not parse; the installed one is unchanged: $out" >&2
    exit 1
  fi
  if ! cmp -s "$file" "$LIB_DIR/$name"; then
    install -m 0644 -o root -g root "$file" "$LIB_DIR/$name.hakube-new"
    mv -f "$LIB_DIR/$name.hakube-new" "$LIB_DIR/$name"
    changed="$changed $name"
  fi
done
echo "helpers in $LIB_DIR:${changed:- unchanged}"
