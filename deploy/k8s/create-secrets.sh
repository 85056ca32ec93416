#!/usr/bin/env bash
# The Secrets the mesh needs beyond those its operators generate
# (mesh-rabbitmq-default-user, <service>-db-app). Run once per namespace:
#   MESH_ADMIN_EMAIL=you@example.com MESH_ADMIN_PASSWORD='...' deploy/k8s/create-secrets.sh
# mesh-jwt is read by accounts (signs tokens) and the gateway (checks them) only;
# mesh-admin by accounts only, and only when both keys are set; mesh-broker-<name>
# by that service (its broker user's password) and the broker-setup Job only.
set -euo pipefail
NAMESPACE=${NAMESPACE:-nameko-mesh}
kubectl -n "$NAMESPACE" create secret generic mesh-jwt \
  --from-literal=JWT_SECRET="$(openssl rand -hex 32)"
if [[ -n "${MESH_ADMIN_EMAIL:-}" ]]; then
  kubectl -n "$NAMESPACE" create secret generic mesh-admin \
    --from-literal=MESH_ADMIN_EMAIL="$MESH_ADMIN_EMAIL" \
    --from-literal=MESH_ADMIN_PASSWORD="${MESH_ADMIN_PASSWORD:?set MESH_ADMIN_PASSWORD too}"
fi
for identity in ACCOUNTS INVENTORY ORDERS PAYMENTS NOTIFICATIONS GATEWAY OPERATOR; do
  kubectl -n "$NAMESPACE" create secret generic "mesh-broker-${identity,,}" \
    --from-literal=BROKER_PASSWORD_$identity="$(openssl rand -hex 24)"
done
