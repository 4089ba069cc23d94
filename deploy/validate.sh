#!/usr/bin/env bash
# Validates deploy/ with no cluster: renders the cloud kustomization and each region's
# overlay (`kubectl kustomize`), then checks every document it renders — Kubernetes'
# own kinds with kubernetes-validate (strict: unknown fields are errors), Agones' kinds
# with check-jsonschema against Agones' CRD schemas (../shared/agones/schemas, or
# AGONES_SCHEMAS). Anything of another kind fails the check.
#
# Needs kubectl (for kustomize), and from PyPI kubernetes-validate and check-jsonschema.
set -euo pipefail
cd "$(dirname "$0")"
# Agones' schemas: AGONES_SCHEMAS, else the shared folder beside this checkout, else the
# workplace's.
SCHEMAS=${AGONES_SCHEMAS:-}
if [ -z "$SCHEMAS" ]; then
  for candidate in "$(cd ../.. && pwd)/shared/agones/schemas" /work/shared/agones/schemas; do
    if [ -d "$candidate" ]; then SCHEMAS=$candidate; break; fi
  done
fi
K8S_VERSION=${K8S_VERSION:-1.32.0}

for tool in kubectl kubernetes-validate check-jsonschema python3; do
  command -v "$tool" >/dev/null || { echo "deploy/validate.sh needs $tool" >&2; exit 2; }
done
[ -n "$SCHEMAS" ] && [ -d "$SCHEMAS" ] || {
  echo "deploy/validate.sh: no Agones CRD schemas found (set AGONES_SCHEMAS to ../shared/agones/schemas)" >&2
  exit 2
}

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
status=0
for target in cloud overlays/eu-west overlays/us-east overlays/ap-southeast; do
  dir="$OUT/$(echo "$target" | tr / -)"
  mkdir -p "$dir"
  kubectl kustomize "$target" >"$dir/all.yaml"
  # One file per document, named KIND-NAME, sorted into Kubernetes' kinds and Agones'.
  python3 - "$dir" <<'EOF'
import os, sys, yaml
out = sys.argv[1]
agones = {
    ("agones.dev/v1", "Fleet"): "fleet-agones-v1.json",
    ("agones.dev/v1", "GameServer"): "gameserver-agones-v1.json",
    ("agones.dev/v1", "GameServerSet"): "gameserverset-agones-v1.json",
    ("autoscaling.agones.dev/v1", "FleetAutoscaler"): "fleetautoscaler-autoscaling-v1.json",
}
core_groups = ("v1", "apps/v1", "batch/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1")
with open(os.path.join(out, "all.yaml")) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
for d in docs:
    kind, api, name = d["kind"], d["apiVersion"], d["metadata"]["name"]
    if (api, kind) in agones:
        sub = "agones-" + agones[(api, kind)]
    elif api in core_groups:
        sub = "core"
    else:
        sys.exit("unexpected kind %s %s (%s): nothing to validate it against" % (api, kind, name))
    os.makedirs(os.path.join(out, sub), exist_ok=True)
    with open(os.path.join(out, sub, "%s-%s.yaml" % (kind, name)), "w") as f:
        yaml.safe_dump(d, f)
print("%d documents" % len(docs), file=sys.stderr)
EOF
  echo "== $target" >&2
  if ! kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$dir"/core/*.yaml; then
    status=1
  fi
  for sub in "$dir"/agones-*; do
    [ -d "$sub" ] || continue
    schema="$SCHEMAS/${sub##*/agones-}"
    # The CRDs' schemas are OpenAPI 3.0 (JSON Schema draft 4's keywords: a boolean
    # `exclusiveMinimum`), so they are read as draft 4.
    if ! check-jsonschema --validator-class jsonschema:Draft4Validator --schemafile "$schema" "$sub"/*.yaml; then
      status=1
    fi
  done
done
exit $status
