# Every Secret written again through the API, so each is encrypted with the
# active key ($ACTIVE_KEY, $ENC_PROVIDER) after a rotation; after this an
# older key can leave hakube:kubernetes.encryption.keys (kubernetes.io:
# "Rotating a decryption key", step 5). Runs after every control plane
# encrypts with $ACTIVE_KEY.
export KUBECONFIG=/etc/kubernetes/admin.conf
count=$(kubectl get secrets --all-namespaces --no-headers 2>/dev/null | wc -l)
kubectl get secrets --all-namespaces -o json | kubectl replace -f - >/dev/null
echo "$count secrets written again: encrypted with $ENC_PROVIDER key $ACTIVE_KEY"
