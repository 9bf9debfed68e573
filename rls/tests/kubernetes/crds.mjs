// Validates objects of custom resource kinds against their CRDs' own OpenAPI schemas, as
// the @kubernetes-models npm packages compile them (Istio's EnvoyFilter, the
// prometheus-operator's ServiceMonitor and PrometheusRule). Reads a JSON array of
// objects on stdin, prints a line per object, and exits 1 if any is invalid or of a kind
// it has no schema for.
//
//     node crds.mjs <node_modules folder> < objects.json
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const models = {
  "networking.istio.io/v1alpha3 EnvoyFilter":
    "@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter.js",
  "monitoring.coreos.com/v1 ServiceMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
  "monitoring.coreos.com/v1 PrometheusRule":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js",
};

const modules = process.argv[2];
let input = "";
for await (const chunk of process.stdin) input += chunk;

let failed = false;
for (const object of JSON.parse(input)) {
  const kind = `${object.apiVersion} ${object.kind}`;
  const name = `${object.kind}/${object.metadata?.name}`;
  if (!(kind in models)) {
    console.log(`ERROR ${name}: no schema for ${kind}`);
    failed = true;
    continue;
  }
  const module = await import(pathToFileURL(join(modules, models[kind])).href);
  try {
    new module[object.kind](object).validate();
    console.log(`OK ${name}`);
  } catch (error) {
    console.log(`ERROR ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
