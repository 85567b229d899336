#!/usr/bin/env bash
# Validates every Kubernetes manifest under deploy/ against the Kubernetes OpenAPI schemas
# (kubernetes-validate, strict: unknown fields are errors), for the oldest and newest
# Kubernetes versions Tide supports. Files that are not API objects served by the API server
# (the shared configuration, the KubeSchedulerConfiguration) are checked by Rust tests instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(grep -rlE '^kind: ' deploy --include='*.yaml' | grep -v -x -F -f <(grep -rlE '^kind: KubeSchedulerConfiguration' deploy --include='*.yaml') | sort)
for k in 1.33.0 1.37.0; do
  python3 -m kubernetes_validate --strict --quiet -k "$k" "${files[@]}"
done
echo "manifests valid for Kubernetes 1.33 and 1.37: ${files[*]}"
