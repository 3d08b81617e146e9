# The admin kubeconfig (its server is the VIP), for a secret stack output.
cat /etc/kubernetes/admin.conf
