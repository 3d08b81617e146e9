# The certificates and keys every control plane shares, from the first one
# (kubeadm's "manual certificate distribution": the cluster CA, the
# service-account key pair, the front-proxy CA), as one PEM bundle in the
# order of $SHARED_FILES, for each joining control plane's shared-certs step.
# kubeadm's CAs last ten years and the service-account key has no expiry: a
# join long after this ran reads the same. Secret output, never logged.
for path in $SHARED_FILES; do
  blocks=$(grep -c -- '^-----BEGIN ' "$path" 2>/dev/null || true)
  [ "$blocks" = 1 ] || { echo "$path: expected one PEM block, found ${blocks:-none}" >&2; exit 1; }
  cat "$path"
done
