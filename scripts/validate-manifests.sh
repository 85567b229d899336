#!/usr/bin/env bash
# Validates the install package under deploy/ against the Kubernetes OpenAPI schemas
# (kubernetes-validate, strict: unknown fields are errors), for the oldest and newest
# Kubernetes versions Tide's base supports:
# - every API object file in deploy/ as written (kustomize's own files, Kustomization and
#   Component, and kube-scheduler's KubeSchedulerConfiguration are not API objects; Rust
#   tests check the latter and the shared configuration);
# - the output of `kustomize build` for deploy/base and every overlay (generated ConfigMaps
#   included). deploy/overlays/kube-1.20 renders policy/v1beta1, which no schema here (1.25+)
#   has: it is rendered here and checked by the real v1.20.2 API server instead
#   (scheduler-plugin/tests/install.rs);
# - the Prometheus rule files (promtool check rules).
# kustomize: scripts/kustomize.sh (Debian trixie's, which `make test` installs).
set -euo pipefail
cd "$(dirname "$0")/.."
versions=(1.33.0 1.37.0)

not_objects=$(grep -rlE '^kind: (KubeSchedulerConfiguration|Kustomization|Component)$' deploy --include='*.yaml' | sort)
mapfile -t files < <(grep -rlE '^kind: ' deploy --include='*.yaml' | sort | grep -v -x -F -f <(printf '%s\n' "$not_objects"))
for k in "${versions[@]}"; do
  python3 -m kubernetes_validate --strict --quiet -k "$k" "${files[@]}"
done
echo "manifests valid for Kubernetes ${versions[*]}: ${files[*]}"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rendered=()
for dir in deploy/base deploy/overlays/*/; do
  dir=${dir%/}
  name=${dir#deploy/}
  f="$out/${name//\//_}.yaml"
  bash scripts/kustomize.sh "$dir" >"$f" || { echo "kustomize build $dir failed" >&2; exit 1; }
  n=$(grep -c '^kind: ' "$f")
  echo "kustomize build $dir: $n objects"
  [[ "$name" == overlays/kube-1.20 ]] && continue
  rendered+=("$f")
done
# kube-1.20 renders the base with the PDB on policy/v1beta1 and nothing else changed.
diff <(sed 's|^apiVersion: policy/v1beta1$|apiVersion: policy/v1|' "$out/overlays_kube-1.20.yaml") "$out/base.yaml" >/dev/null ||
  { echo "deploy/overlays/kube-1.20 changes more than the PDB's API version" >&2; exit 1; }
for k in "${versions[@]}"; do
  python3 -m kubernetes_validate --strict --quiet -k "$k" "${rendered[@]}"
done
echo "rendered base and overlays valid for Kubernetes ${versions[*]}"

for rules in deploy/components/*/*.rules.yaml; do
  promtool check rules "$rules"
done
