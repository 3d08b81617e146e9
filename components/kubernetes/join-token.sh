# A bootstrap token for $JOINER's join, minted on this run of the step and
# valid until that join succeeded: the join-done step after the join deletes
# it (--ttl 0), so a join that fails today and is retried weeks later finds
# it still valid. Its id ($TOKEN_ID) follows the joiner's machine (a rebuilt
# node gets a new one) and is not secret, as kubeadm's token ids are not; its
# secret half is new each time this step runs. Printed with the cluster CA's
# public key hash as JSON: this step's output is secret and never logged.
export KUBECONFIG=/etc/kubernetes/admin.conf
secret=$(openssl rand -hex 8)
kubeadm token delete "$TOKEN_ID" >/dev/null 2>&1 || true
kubeadm token create "$TOKEN_ID.$secret" --ttl 0 \
  --description "hakube: join of $JOINER, deleted once it joined" >/dev/null
hash=$(openssl x509 -pubkey -noout -in "$CA_CERT" |
       openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1)
printf '{"token": "%s.%s", "caCertHash": "sha256:%s"}\n' "$TOKEN_ID" "$secret" "$hash"
