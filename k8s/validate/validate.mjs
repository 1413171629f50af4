#!/usr/bin/env node
// Offline validation of k8s/: every manifest and every kustomization's rendered output.
//   node validate.mjs [--root K8S_DIR]       everything under k8s/ + the Dockerfile (exit 1 on any error)
//   node validate.mjs files FILE...          only these manifest files
//   node validate.mjs pod-command DIR        the StatefulSet's pod command in DIR's render, a line a fact
// Checks, for each object:
//  1. the Kubernetes API schema, through kubernetes-models@4.5.1's validators (types, enums, required);
//  2. unknown (e.g. misspelled) fields, against the property lists of the same models' type
//     declarations (kubernetes-models does not reject them: its schemas allow extra properties);
//  3. MPIJob (kubeflow.org/v2beta1) against the openAPIV3Schema of k8s/crds/mpijob-v2beta1.yaml
//     with ajv (additionalProperties: false added), and its pod templates as in 1 and 2;
//  4. Ringfuse's own rules (headless Service, Parallel, -np = replicas x --nproc-per-pod, ...).
// Rendering implements the kustomize subset k8s/ uses: `resources` (files, directories) and
// `patches` (strategic merge by apiVersion/kind/name); any other key is an error.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import YAML from "yaml";
import Ajv from "ajv";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const modelsDir = path.dirname(require.resolve("kubernetes-models/package.json"));
const nodeModules = path.dirname(modelsDir);

// ---------- loading ----------
function loadDocs(file) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: YAML: ${d.errors[0].message}`);
    const v = d.toJSON();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}
const id = (o) => `${o?.kind ?? "?"}/${o?.metadata?.name ?? "?"}`;

// ---------- kustomize subset ----------
const MERGE_KEYS = { containers: "name", initContainers: "name", ephemeralContainers: "name",
  volumes: "name", env: "name", volumeMounts: "mountPath", imagePullSecrets: "name" };
function mergeKeyFor(field, a, b) {
  if (field === "ports") {
    const all = [...a, ...b];
    if (all.every((x) => x && typeof x === "object" && "containerPort" in x)) return "containerPort";
    if (all.every((x) => x && typeof x === "object" && "port" in x)) return "port";
    return null;
  }
  return MERGE_KEYS[field] ?? null;
}
function strategicMerge(base, patch, field = "") {
  if (patch === null) return undefined;
  if (Array.isArray(patch)) {
    const key = Array.isArray(base) ? mergeKeyFor(field, base, patch) : null;
    if (!key) return structuredClone(patch); // lists without a merge key are replaced
    const out = base.map((x) => structuredClone(x));
    for (const p of patch) {
      const i = out.findIndex((x) => x?.[key] === p?.[key]);
      if (i < 0) out.push(structuredClone(p));
      else out[i] = strategicMerge(out[i], p, "");
    }
    return out;
  }
  if (patch && typeof patch === "object") {
    const out = base && typeof base === "object" && !Array.isArray(base) ? structuredClone(base) : {};
    for (const [k, v] of Object.entries(patch)) {
      const merged = strategicMerge(out[k], v, k);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
    return out;
  }
  return patch;
}
export function render(dir) {
  const kfile = path.join(dir, "kustomization.yaml");
  const [k] = loadDocs(kfile);
  const allowed = new Set(["apiVersion", "kind", "resources", "patches"]);
  for (const key of Object.keys(k)) {
    if (!allowed.has(key)) throw new Error(`${kfile}: "${key}" is outside the kustomize subset this validator renders (resources, patches)`);
  }
  let objects = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    if (fs.statSync(p).isDirectory()) objects.push(...render(p));
    else objects.push(...loadDocs(p));
  }
  for (const patch of k.patches ?? []) {
    if (typeof patch !== "object" || !patch.path || Object.keys(patch).length !== 1) {
      throw new Error(`${kfile}: only "patches: - path: FILE" is supported`);
    }
    for (const pd of loadDocs(path.join(dir, patch.path))) {
      const i = objects.findIndex((o) => o.apiVersion === pd.apiVersion && o.kind === pd.kind &&
        o.metadata?.name === pd.metadata?.name);
      if (i < 0) throw new Error(`${kfile}: patch ${patch.path} targets ${id(pd)}, which no resource defines`);
      objects[i] = strategicMerge(objects[i], pd);
    }
  }
  return objects;
}

// ---------- property lists from kubernetes-models' type declarations ----------
const fileCache = new Map();
function stripComments(s) { return s.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, ""); }
function parseDts(file) {
  if (fileCache.has(file)) return fileCache.get(file);
  const text = stripComments(fs.readFileSync(file, "utf8"));
  const imports = {};
  for (const m of text.matchAll(/import \{ (\w+) \} from "([^"]+)"/g)) imports[m[1]] = m[2];
  const entry = { shape: { open: true } };
  fileCache.set(file, entry); // guards recursive types (JSONSchemaProps)
  const m = /export interface \w+(?: extends [\w, ]+)? \{/.exec(text);
  if (m) {
    const p = new TypeParser(text, m.index + m[0].length - 1, file, imports);
    entry.shape = p.type();
  }
  return entry;
}
function resolveImport(fromFile, spec) {
  const base = spec.startsWith(".") ? path.resolve(path.dirname(fromFile), spec) : path.join(nodeModules, spec);
  return base + ".d.ts";
}
class TypeParser {
  constructor(text, i, file, imports) { Object.assign(this, { text, i, file, imports }); }
  ws() { while (/\s/.test(this.text[this.i])) this.i++; }
  peek(s) { this.ws(); return this.text.startsWith(s, this.i); }
  eat(s) { if (!this.peek(s)) throw new Error(`${this.file}: expected ${s} at ${this.text.slice(this.i, this.i + 40)}`); this.i += s.length; }
  type() {
    let t = this.single();
    while (this.peek("|")) { this.eat("|"); const u = this.single(); if (t.scalar) t = u; }
    return t;
  }
  single() {
    this.ws();
    if (this.peek("Array<")) { this.eat("Array<"); const items = this.type(); this.eat(">"); return { items }; }
    if (this.peek("{")) {
      this.eat("{");
      if (this.peek("[")) {
        this.eat("["); while (this.text[this.i] !== "]") this.i++; this.eat("]"); this.eat(":");
        const values = this.type(); if (this.peek(";")) this.eat(";"); this.eat("}");
        return { values };
      }
      const props = {};
      while (!this.peek("}")) {
        const m = /^"([^"]+)"\??:/.exec(this.text.slice(this.i));
        if (!m) throw new Error(`${this.file}: cannot parse property at ${this.text.slice(this.i, this.i + 40)}`);
        this.i += m[0].length;
        props[m[1]] = this.type();
        if (this.peek(";")) this.eat(";");
      }
      this.eat("}");
      return Object.keys(props).length ? { props } : { open: true };
    }
    if (this.peek('"')) { this.i = this.text.indexOf('"', this.i + 1) + 1; return { scalar: true }; }
    const m = /^[\w$]+/.exec(this.text.slice(this.i));
    if (!m) throw new Error(`${this.file}: cannot parse type at ${this.text.slice(this.i, this.i + 40)}`);
    this.i += m[0].length;
    if (this.peek("[")) { this.eat("["); while (this.text[this.i] !== "]") this.i++; this.eat("]"); }
    if (["string", "number", "boolean", "null"].includes(m[0])) return { scalar: true };
    if (this.imports[m[0]]) return { ref: resolveImport(this.file, this.imports[m[0]]) };
    return { open: true }; // any, object, unknown
  }
}
function levenshtein(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) {
    d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  }
  return d[a.length][b.length];
}
function unknownFields(data, shape, where, errors) {
  while (shape.ref) shape = parseDts(shape.ref).shape;
  if (data === null || typeof data !== "object") return;
  if (shape.items && Array.isArray(data)) data.forEach((x, i) => unknownFields(x, shape.items, `${where}[${i}]`, errors));
  else if (shape.values && !Array.isArray(data)) for (const [k, v] of Object.entries(data)) unknownFields(v, shape.values, `${where}.${k}`, errors);
  else if (shape.props && !Array.isArray(data)) {
    for (const [k, v] of Object.entries(data)) {
      const at = where ? `${where}.${k}` : k;
      if (!(k in shape.props)) {
        const near = Object.keys(shape.props).filter((p) => levenshtein(p.toLowerCase(), k.toLowerCase()) <= 2);
        errors.push(`unknown field ${at}${near.length ? ` (did you mean ${near.join(" or ")}?)` : ""}`);
      } else unknownFields(v, shape.props[k], at, errors);
    }
  }
}

// ---------- schema validation ----------
function modelFor(apiVersion, kind) {
  const rel = `${apiVersion}/${kind}`;
  const dts = path.join(modelsDir, `${rel}.d.ts`);
  if (!/^[\w.]+(\/[\w.]+)?$/.test(apiVersion ?? "") || !/^\w+$/.test(kind ?? "") || !fs.existsSync(dts)) return null;
  return { Model: require(`kubernetes-models/${rel}`)[kind], dts };
}
function schemaErrors(obj, Model) {
  try { new Model(obj).validate(); return []; } catch (e) {
    if (!e.errors) return [e.message];
    return e.errors.map((x) => {
      const at = x.instancePath.replace(/^\//, "").replace(/\/(\d+)(?=\/|$)/g, "[$1]").replace(/\//g, ".");
      const extra = x.params?.allowedValues ? `: ${x.params.allowedValues.join(", ")}` : x.params?.missingProperty ? ` (${x.params.missingProperty})` : "";
      return `${at || "(object)"}: ${x.message}${extra}`;
    });
  }
}
let crdValidators = null;
function closeSchema(s) {
  if (!s || typeof s !== "object") return s;
  const out = Array.isArray(s) ? s.map(closeSchema) : Object.fromEntries(Object.entries(s).map(([k, v]) => [k, closeSchema(v)]));
  if (!Array.isArray(s) && s.type === "object" && s.properties && !s["x-kubernetes-preserve-unknown-fields"] && out.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}
function crdValidator(apiVersion, kind) {
  if (!crdValidators) {
    crdValidators = new Map();
    const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
    const crdDir = path.join(here, "..", "crds");
    for (const f of fs.readdirSync(crdDir).filter((f) => f.endsWith(".yaml"))) {
      for (const crd of loadDocs(path.join(crdDir, f))) {
        for (const v of crd.spec.versions) {
          crdValidators.set(`${crd.spec.group}/${v.name}/${crd.spec.names.kind}`, ajv.compile(closeSchema(v.schema.openAPIV3Schema)));
        }
      }
    }
  }
  return crdValidators.get(`${apiVersion}/${kind}`);
}
const podTemplate = () => modelFor("v1", "PodTemplateSpec");

export function validateObject(obj) {
  const errors = [];
  if (!obj || typeof obj !== "object" || !obj.apiVersion || !obj.kind) return ["not a Kubernetes object (apiVersion and kind are required)"];
  const builtin = modelFor(obj.apiVersion, obj.kind);
  if (builtin) {
    errors.push(...schemaErrors(obj, builtin.Model));
    unknownFields(obj, { ref: builtin.dts }, "", errors);
  } else {
    const v = crdValidator(obj.apiVersion, obj.kind);
    if (!v) return [`no schema for ${obj.apiVersion} ${obj.kind} (neither a built-in kind nor a CRD in k8s/crds/)`];
    if (!v(obj)) {
      for (const x of v.errors) {
        const at = x.instancePath.replace(/^\//, "").replace(/\//g, ".");
        const extra = x.keyword === "additionalProperties" ? ` (unknown field ${at ? at + "." : ""}${x.params.additionalProperty})`
          : x.params?.allowedValues ? `: ${x.params.allowedValues.join(", ")}` : "";
        errors.push(`${at || "(object)"}: ${x.message}${extra}`);
      }
    }
    if (obj.kind === "MPIJob") {
      const { Model, dts } = podTemplate();
      for (const [role, spec] of Object.entries(obj.spec?.mpiReplicaSpecs ?? {})) {
        const at = `spec.mpiReplicaSpecs.${role}.template`;
        if (!spec?.template) continue;
        errors.push(...schemaErrors(spec.template, Model).map((e) => `${at}.${e}`));
        unknownFields(spec.template, { ref: dts }, at, errors);
      }
    }
  }
  return errors;
}

// ---------- Ringfuse's rules ----------
function flag(args, name) { const i = args.indexOf(name); return i >= 0 && i < args.indexOf("--") ? args[i + 1] : undefined; }
function workload(obj) {
  if (obj.kind === "StatefulSet") return { pods: obj.spec?.replicas ?? 1, pod: obj.spec?.template?.spec };
  if (obj.kind === "Job") return { pods: obj.spec?.completions ?? 1, pod: obj.spec?.template?.spec };
  return null;
}
export function ringfuseRules(objects) {
  const errors = [];
  const services = new Map(objects.filter((o) => o.kind === "Service").map((s) => [s.metadata?.name, s]));
  for (const s of services.values()) {
    if (s.spec?.clusterIP !== "None") continue;
    if (s.spec.publishNotReadyAddresses !== true) errors.push(`${id(s)}: a headless Service for rendezvous needs publishNotReadyAddresses: true`);
    for (const p of s.spec.ports ?? []) if (!p.name) errors.push(`${id(s)}: port ${p.port} needs a name (SRV records exist only for named ports)`);
  }
  for (const o of objects) {
    const w = workload(o);
    if (!w || !w.pod) continue;
    for (const c of [...(w.pod.containers ?? []), ...(w.pod.initContainers ?? [])]) {
      const args = [...(c.command ?? []), ...(c.args ?? [])];
      // httpGet probes must hit the endpoint ringfuse-run --health-port serves.
      const healthPort = Number(flag(args, "--health-port") ?? 0);
      const paths = { livenessProbe: ["/healthz"], readinessProbe: ["/readyz", "/healthz"], startupProbe: ["/healthz", "/readyz"] };
      for (const probe of Object.keys(paths)) {
        const get = c[probe]?.httpGet;
        if (!get) continue;
        const at = `${id(o)}: container ${c.name}: ${probe}`;
        if (!healthPort) { errors.push(`${at} uses httpGet, but ringfuse-run has no --health-port (it serves HTTP only with one)`); continue; }
        const named = typeof get.port === "string" ? (c.ports ?? []).find((p) => p.name === get.port) : undefined;
        const target = typeof get.port === "string" ? named?.containerPort : get.port;
        if (typeof get.port === "string" && !named) errors.push(`${at}: httpGet port ${get.port} names no containerPort`);
        else if (target !== healthPort) errors.push(`${at}: httpGet port ${get.port} is not --health-port ${healthPort}`);
        if (!paths[probe].includes(get.path)) errors.push(`${at}: httpGet path ${get.path} must be ${paths[probe].join(" or ")}`);
      }
      if (healthPort && !(c.ports ?? []).some((p) => p.containerPort === healthPort)) errors.push(`${id(o)}: container ${c.name}: no containerPort ${healthPort} for --health-port`);
      const svcName = flag(args, "--k8s-service");
      if (!svcName) continue;
      const at = `${id(o)}: container ${c.name}`;
      const np = Number(flag(args, "-np")), per = Number(flag(args, "--nproc-per-pod") ?? 1);
      if (Number.isInteger(w.pods) && np !== w.pods * per) errors.push(`${at}: -np ${flag(args, "-np")} but ${w.pods} pods x --nproc-per-pod ${per} = ${w.pods * per}`);
      const svc = services.get(svcName);
      if (!svc) errors.push(`${at}: --k8s-service ${svcName} names no Service in the same manifests`);
      else if (svc.spec?.clusterIP !== "None") errors.push(`${at}: Service ${svcName} is not headless (clusterIP: None)`);
      const port = Number(flag(args, "--port") ?? 29500);
      if (!(c.ports ?? []).some((p) => p.containerPort === port)) errors.push(`${at}: no containerPort ${port} for the store (--port)`);
      if (svc && !(svc.spec?.ports ?? []).some((p) => p.port === port)) errors.push(`${at}: Service ${svcName} does not expose port ${port}`);
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
      if (env.POD_IP?.valueFrom?.fieldRef?.fieldPath !== "status.podIP") errors.push(`${at}: POD_IP must come from the downward API (fieldRef status.podIP)`);
      if (args.includes("$(POD_NAMESPACE)") && env.POD_NAMESPACE?.valueFrom?.fieldRef?.fieldPath !== "metadata.namespace") errors.push(`${at}: POD_NAMESPACE must come from fieldRef metadata.namespace`);
      if (!env.RINGFUSE_JOB_SECRET?.valueFrom?.secretKeyRef) errors.push(`${at}: RINGFUSE_JOB_SECRET must come from a Secret (valueFrom.secretKeyRef)`);
      const shm = (c.volumeMounts ?? []).find((m) => m.mountPath === "/dev/shm");
      const vol = shm && (w.pod.volumes ?? []).find((v) => v.name === shm.name);
      if (!vol?.emptyDir || vol.emptyDir.medium !== "Memory" || !vol.emptyDir.sizeLimit) errors.push(`${at}: /dev/shm must be an emptyDir {medium: Memory, sizeLimit}`);
      for (const r of ["nvidia.com/gpu", "vpc.amazonaws.com/efa"]) {
        const req = c.resources?.requests?.[r], lim = c.resources?.limits?.[r];
        if (req !== undefined && String(req) !== String(lim)) errors.push(`${at}: ${r} must be set as a limit (equal to any request)`);
      }
      const gpus = c.resources?.limits?.["nvidia.com/gpu"];
      if (gpus !== undefined && Number(gpus) !== per) errors.push(`${at}: ${gpus} GPUs but --nproc-per-pod ${per}`);
      if (o.kind === "StatefulSet") {
        if (o.spec.serviceName !== svcName) errors.push(`${id(o)}: serviceName must be ${svcName} so pod names resolve`);
        if (o.spec.podManagementPolicy !== "Parallel") errors.push(`${id(o)}: podManagementPolicy must be Parallel (OrderedReady deadlocks on rendezvous)`);
      } else {
        if (o.spec.completionMode !== "Indexed") errors.push(`${id(o)}: completionMode must be Indexed`);
        if (w.pod.subdomain !== svcName) errors.push(`${id(o)}: template.spec.subdomain must be ${svcName}`);
        if ((o.spec.parallelism ?? 1) !== w.pods) errors.push(`${id(o)}: parallelism must equal completions (every pod is needed for rendezvous)`);
      }
    }
  }
  return errors;
}

// ---------- Dockerfile rules (plus dockerfilelint) ----------
export function dockerfileErrors(file) {
  const errors = [];
  const text = fs.readFileSync(file, "utf8").replace(/\\\n/g, " ");
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const args = Object.fromEntries(lines.filter((l) => /^ARG \w+=/.test(l)).map((l) => l.slice(4).split("=")));
  const froms = lines.filter((l) => /^FROM /i.test(l));
  if (froms.length < 2) errors.push("not multi-stage (fewer than two FROM)");
  for (const f of froms) {
    const image = f.split(/\s+/)[1].replace(/\$\{(\w+)\}/g, (_, a) => args[a] ?? "");
    const tag = image.includes("@") ? "digest" : image.split("/").pop().split(":")[1];
    if (!tag || tag === "latest") errors.push(`${f}: image not pinned by a tag (resolves to ${image})`);
  }
  const last = lines.slice(lines.lastIndexOf(froms.at(-1)));
  const user = last.filter((l) => /^USER /.test(l)).at(-1);
  if (!user || /^USER (root|0)(:|$)/.test(user)) errors.push("the final stage does not switch to a non-root USER");
  for (const l of lines.filter((l) => /^RUN .*apt-get install/.test(l))) {
    if (!l.includes("rm -rf /var/lib/apt/lists")) errors.push(`apt lists not removed in: ${l.slice(0, 60)}...`);
    if (!l.includes("--no-install-recommends")) errors.push(`apt-get install without --no-install-recommends: ${l.slice(0, 60)}...`);
  }
  if (!last.some((l) => /^ENTRYPOINT \["ringfuse-run"\]/.test(l))) errors.push("the final stage's ENTRYPOINT is not [\"ringfuse-run\"]");
  const lint = spawnSync(process.execPath, [require.resolve("dockerfilelint/bin/dockerfilelint"), "-o", "json", file], { encoding: "utf8" });
  try {
    for (const f of JSON.parse(lint.stdout).files ?? []) for (const i of f.issues ?? []) errors.push(`dockerfilelint line ${i.line}: ${i.title} (${i.category})`);
  } catch { errors.push(`dockerfilelint did not run: ${lint.stderr || lint.stdout}`); }
  return errors;
}

// ---------- driver ----------
function listYaml(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return ["node_modules", "validate", "crds"].includes(e.name) ? [] : listYaml(p);
    return /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}
function report(label, objects, extraErrors = []) {
  let failed = extraErrors.length > 0;
  for (const e of extraErrors) console.log(`FAIL ${label}: ${e}`);
  for (const o of objects) {
    const errs = validateObject(o);
    for (const e of errs) console.log(`FAIL ${label}: ${id(o)}: ${e}`);
    if (errs.length) failed = true; else console.log(`ok   ${label}: ${o.apiVersion} ${id(o)}`);
  }
  const rules = ringfuseRules(objects);
  for (const e of rules) console.log(`FAIL ${label}: ${e}`);
  return failed || rules.length > 0;
}
function main(argv) {
  let failed = false;
  const guard = (label, fn) => { try { return fn(); } catch (e) { console.log(`FAIL ${label}: ${e.message}`); failed = true; return null; } };
  if (argv[0] === "pod-command") {
    // One fact a line, for tests/k8s/k8s_rehearsal_test.cpp: "replicas N", "service S",
    // "arg A" (command then args, in order), "env NAME=VALUE" (literal values only).
    const objects = render(path.resolve(argv[1]));
    const sts = objects.find((o) => o.kind === "StatefulSet");
    const c = sts.spec.template.spec.containers[0];
    const lines = [`replicas ${sts.spec.replicas}`, `service ${sts.spec.serviceName}`,
      ...[...(c.command ?? []), ...(c.args ?? [])].map((a) => `arg ${a}`),
      ...(c.env ?? []).filter((e) => typeof e.value === "string").map((e) => `env ${e.name}=${e.value}`)];
    console.log(lines.join("\n"));
    return 0;
  }
  if (argv[0] === "files") {
    for (const f of argv.slice(1)) {
      const objects = guard(f, () => loadDocs(f));
      if (objects) failed = report(f, objects) || failed;
    }
  } else {
    const root = path.resolve(argv[0] === "--root" ? argv[1] : path.join(here, ".."));
    const rel = (p) => path.relative(root, p) || ".";
    const kdirs = listYaml(root).filter((f) => path.basename(f) === "kustomization.yaml").map(path.dirname);
    // Patches and a kustomization's resources are checked in its rendered output (a resource
    // alone may name a Service defined in another file).
    const covered = new Set(kdirs.flatMap((d) => {
      const k = loadDocs(path.join(d, "kustomization.yaml"))[0];
      return [...(k.patches ?? []).map((p) => p.path), ...(k.resources ?? [])].map((p) => path.resolve(d, p));
    }));
    for (const f of listYaml(root)) {
      if (path.basename(f) === "kustomization.yaml" || covered.has(f)) continue;
      const objects = guard(rel(f), () => loadDocs(f));
      if (objects) failed = report(rel(f), objects) || failed;
    }
    for (const d of kdirs) {
      const objects = guard(`${rel(d)} (rendered)`, () => render(d));
      if (objects) failed = report(`${rel(d)} (rendered)`, objects) || failed;
    }
    for (const f of fs.readdirSync(path.join(root, "crds")).map((f) => path.join(root, "crds", f))) {
      failed = guard(rel(f), () => report(rel(f), loadDocs(f))) || failed;
    }
    const dockerfile = path.join(root, "Dockerfile");
    const derrs = guard("Dockerfile", () => dockerfileErrors(dockerfile)) ?? [];
    for (const e of derrs) console.log(`FAIL Dockerfile: ${e}`);
    if (!derrs.length) console.log("ok   Dockerfile: multi-stage, FROM pinned by tag, non-root USER, apt lists removed, dockerfilelint clean");
    failed = failed || derrs.length > 0;
  }
  console.log(failed ? "validation FAILED" : "validation passed");
  return failed ? 1 : 0;
}
process.exitCode = main(process.argv.slice(2));
