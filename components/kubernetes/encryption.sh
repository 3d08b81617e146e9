# Encryption of Secrets at rest: this control plane's EncryptionConfiguration
# ($ENC_CONFIG, root-only, read by kube-apiserver at start). The keys arrive
# on stdin, one "name base64-secret" per line, the active one first, as
# hakube:kubernetes.encryption.keys lists them. STAGE says what this run does:
# - initial: before kubeadm init/join, write the file only if there is none
#   (a running apiserver's file changes only in the staged rotation below);
# - add: every key of the list is in the file, but the key this node
#   encrypts with now stays first (a new key decrypts only): every apiserver
#   can read what any of them writes, before any of them writes with it;
# - use: the list exactly (its first key encrypts).
# When the file changed and kube-apiserver runs, its container is restarted
# and the step waits until it is ready: one control plane at a time, as the
# steps are chained (kubernetes.io: "Rotating a decryption key").
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/keys"
names=$(awk '{ print $1 }' "$work/keys")
[ -n "$names" ] || { echo "no encryption keys on stdin" >&2; exit 1; }
order="$names"
if [ "$STAGE" = initial ] && [ -s "$ENC_CONFIG" ]; then
  echo "$ENC_CONFIG present: a rotation changes it, in its staged steps"
  exit 0
fi
if [ "$STAGE" != initial ] && [ -s "$APISERVER_MANIFEST" ] &&
   ! grep -q -- "--encryption-provider-config=$ENC_CONFIG" "$APISERVER_MANIFEST"; then
  echo "kube-apiserver on $(hostname) does not read $ENC_CONFIG: this cluster was created without" >&2
  echo "encryption at rest, and hakube changes the flags of a running apiserver only through kubeadm." >&2
  echo "Set hakube:kubernetes.encryption.enabled: false for this stack (or rebuild the cluster)." >&2
  exit 1
fi
if [ "$STAGE" = add ] && [ -s "$ENC_CONFIG" ]; then
  provider=$(sed -n 's/^      - \([a-z]*\):$/\1/p' "$ENC_CONFIG" | head -n1)
  if [ -n "$provider" ] && [ "$provider" != "$ENC_PROVIDER" ]; then
    echo "$(hostname) encrypts with $provider: moving to $ENC_PROVIDER in place is not supported" >&2
    echo "(each key's secret belongs to its provider). Set hakube:kubernetes.encryption.provider back to $provider." >&2
    exit 1
  fi
  current=$(sed -n 's/^ *- name: *\([a-z0-9-]*\)$/\1/p' "$ENC_CONFIG" | head -n1)
  if grep -qx -- "$current" <<<"$names"; then
    order=$(printf '%s\n' "$current"; grep -vx -- "$current" <<<"$names" || true)
  fi
fi
{
  echo "# Managed by hakube (hakube:kubernetes.encryption): changes are overwritten by \`pulumi up\`."
  echo "apiVersion: apiserver.config.k8s.io/v1"
  echo "kind: EncryptionConfiguration"
  echo "resources:"
  echo "  - resources:"
  echo "      - secrets"
  echo "    providers:"
  echo "      - $ENC_PROVIDER:"
  echo "          keys:"
  for name in $order; do
    secret=$(awk -v n="$name" '$1 == n { print $2 }' "$work/keys")
    echo "            - name: $name"
    echo "              secret: $secret"
  done
  # what was written before encryption was on stays readable
  echo "      - identity: {}"
} >"$work/config.yaml"
install -d -m 0700 "$(dirname "$ENC_CONFIG")"
put_file "$work/config.yaml" "$ENC_CONFIG" 0600 root:root
if [ "$CHANGED" = 0 ]; then
  echo "$ENC_CONFIG unchanged (encrypting with $(head -n1 <<<"$order"))"
  exit 0
fi
export CONTAINER_RUNTIME_ENDPOINT=unix:///run/containerd/containerd.sock
ids=$(crictl ps --name '^kube-apiserver$' -q 2>/dev/null || true)
if [ -z "$ids" ]; then
  echo "$ENC_CONFIG written (keys: $(tr '\n' ' ' <<<"$order")); no kube-apiserver runs here yet"
  exit 0
fi
# shellcheck disable=SC2086 # one id per word
crictl stop $ids >/dev/null
for ((i = 1; i <= 90; i++)); do
  sleep "${POLL_SECONDS:-2}"
  if [ "$(curl -sk --max-time 2 "https://127.0.0.1:$API_PORT/readyz")" = ok ]; then
    echo "kube-apiserver on $(hostname) restarted: encrypting with $(head -n1 <<<"$order"), decrypting with $(tr '\n' ' ' <<<"$order")"
    exit 0
  fi
done
echo "kube-apiserver on $(hostname) not ready 180 s after its restart for $ENC_CONFIG" >&2
exit 1
