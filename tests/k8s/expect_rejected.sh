#!/bin/sh
# k8s/validate must reject the deliberately broken manifests in k8s/validate/testdata,
# naming each bad field. Usage: expect_rejected.sh K8S_DIR
set -u
k8s=$1
out=$(node "$k8s/validate/validate.mjs" files "$k8s/validate/testdata/broken-statefulset.yaml" \
      "$k8s/validate/testdata/broken-mpijob.yaml" 2>&1)
rc=$?
echo "$out"
status=0
if [ "$rc" -ne 1 ]; then echo "EXPECTED exit 1, got $rc"; status=1; fi
for want in \
  "StatefulSet/trainer: spec.replicas: must be integer" \
  "unknown field spec.template.spec.containers[0].imagePulPolicy (did you mean imagePullPolicy?)" \
  "unknown field spec.slotPerWorker" \
  "spec.mpiImplementation: must be equal to one of the allowed values" \
  "unknown field spec.mpiReplicaSpecs.Worker.template.spec.containers[0].resource (did you mean resources?)" \
  "validation FAILED"; do
  if ! printf '%s\n' "$out" | grep -qF -- "$want"; then echo "MISSING: $want"; status=1; fi
done
# And the same Service + StatefulSet, fixed, passes (the failures above are the broken fields).
fixed=$(mktemp)
sed -e 's/replicas: "two"/replicas: 3/' -e 's/imagePulPolicy/imagePullPolicy/' \
  "$k8s/validate/testdata/broken-statefulset.yaml" > "$fixed.yaml"
if ! node "$k8s/validate/validate.mjs" files "$fixed.yaml"; then echo "the fixed manifest should pass"; status=1; fi
rm -f "$fixed" "$fixed.yaml"
exit $status
