# Join credentials for $JOINER, minted just before its join: a fresh bootstrap
# token (2 h), the cluster CA's public key hash, and for a control plane a
# fresh certificate key with the control-plane certs re-uploaded under it
# (kubeadm deletes uploaded certs after 2 h). Printed as JSON: this step's
# output is secret and never logged.
export KUBECONFIG=/etc/kubernetes/admin.conf
token=$(kubeadm token create --ttl 2h --description "hakube: join of $JOINER")
hash=$(openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt |
       openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1)
key=""
if [ "$CONTROL_PLANE" = 1 ]; then
  key=$(kubeadm certs certificate-key)
  kubeadm init phase upload-certs --upload-certs --config "$KUBEADM_CONFIG" \
    --certificate-key "$key" >/dev/null
fi
printf '{"token": "%s", "caCertHash": "sha256:%s", "certificateKey": "%s"}\n' "$token" "$hash" "$key"
