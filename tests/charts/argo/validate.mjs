// Validate argoproj.io/v1alpha1 objects (JSON list on stdin) against the Argo Rollouts models'
// schemas (@kubernetes-models/argo-rollouts, generated from argo-rollouts' Go types: field
// types, enums and required fields; unknown fields are not rejected). Pod templates inside a
// Rollout or a Job metric are checked against Kubernetes' own schemas by the same package.
// Prints one line per object, "ok <Kind>/<name>" or "invalid <Kind>/<name>: <errors>";
// exits 1 when any is invalid.
import * as models from "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const docs = JSON.parse(Buffer.concat(chunks).toString());
let failed = 0;
for (const doc of docs) {
  const ref = `${doc.kind}/${doc.metadata?.name}`;
  const Model = models[doc.kind];
  if (typeof Model !== "function") {
    console.log(`invalid ${ref}: no model for kind ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok ${ref}`);
  } catch (err) {
    console.log(`invalid ${ref}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
