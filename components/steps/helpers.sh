# Install hakube's helpers (stdin: "#=== hakube-lib NAME" sections) in
# $LIB_DIR, where every step finds them. Each is checked (`bash -n`, or
# Python's compile for a .py) before it replaces the one in use; unchanged
# files are left alone. Runs before any other step of this node; needs bash,
# coreutils and python3 (which cloud-init itself runs on).
# Its stdout is this machine's id alone (/var/lib/hakube/machine-id, made once
# per root disk): every later step of the node carries it in its text.
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
  case $name in
    *.py) check=(python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$file") ;;
    *) check=(bash -n "$file") ;;
  esac
  if ! out=$("${check[@]}" 2>&1); then
    echo "helper $name does not parse; the installed one is unchanged: $out" >&2
    exit 1
  fi
  if ! cmp -s "$file" "$LIB_DIR/$name"; then
    install -m 0644 -o root -g root "$file" "$LIB_DIR/$name.hakube-new"
    mv -f "$LIB_DIR/$name.hakube-new" "$LIB_DIR/$name"
    changed="$changed $name"
  fi
done
echo "helpers in $LIB_DIR:${changed:- unchanged}" >&2
id_file=/var/lib/hakube/machine-id
if [ ! -s "$id_file" ]; then
  install -d -m 0755 /var/lib/hakube
  tr -d '-' </proc/sys/kernel/random/uuid >"$id_file.new"
  mv -f "$id_file.new" "$id_file"
fi
cat "$id_file"
