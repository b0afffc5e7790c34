#!/usr/bin/env python3
"""Offline validation of the agentops Helm chart; scripts/validate-helm.sh runs it with the helm
binaries and the Python packages (pyyaml, jsonschema, kubernetes-validate) it installs.

What it checks, per helm binary given:
  - `helm lint --strict` of the default values and of every helm/examples/*.yaml;
  - `helm template` of each of them, and on the rendered objects:
      * the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors)
        for every Kubernetes version given (the ServiceMonitor CRD only by shape);
      * the rendered config.toml against settings/src/default.toml (every key known, of the
        same TOML type, every setting rendered but the JWT secret), and the AGENTOPS__*
        variables against it too;
      * the wiring: probes on /healthz and /readyz on declared ports, resources, non-root
        read-only containers, Service/PDB selectors matching one Deployment, HPA targets,
        consumer replicas <= kafka.partitions, the config checksum annotation, the JWT
        secretKeyRef, the hook Jobs and their config;
      * if built binaries are found (target/{debug,release}), `<bin> check-config` of every
        rendered Deployment and Job with its rendered config and environment: the services'
        own settings loader accepts what the chart renders;
  - the chart's kubeVersion constraint (rendering for Kubernetes 1.24 must fail);
  - the alert rules: a ConfigMap, or a PrometheusRule when monitoring.coreos.com/v1 is served,
    each holding ops/rules/agentops.rules.yml unchanged;
  - every helm/tests/invalid/*.yaml must be refused by `helm template` with the message its
    `# expect-...` line names; `expect-schema` files also by `helm lint --strict` and by the
    Python jsonschema validator; `expect-template` ones must pass the schema (the chart's
    template checks refuse them; helm lint only logs a template `fail`, by design).
Once: Chart.yaml, values.schema.json as a draft-07 schema, every values file against it, every
`.Values.x.y` in the templates present in values.yaml and every values.yaml key used; the
Dockerfile parsed by BuildKit's parser (PyPI `dockerfile`) and checked against the chart (paths,
user, no AGENTOPS__ variables, COPY sources present and not .dockerignored, the model set's
SHA-256s). The image is not built.

Prints one line per check and ends with "N passed, M failed"; exits 1 on any failure.
"""
import argparse
import base64
import copy
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import jsonschema
import kubernetes_validate
import yaml

BINARIES = ("ingest", "aggregator", "scorer", "auth-api", "alerter")
CONSUMERS = {"aggregator": "aggregator", "scorer": "scorer", "alerter": "alerter"}
# Settings the chart does not put into config.toml on purpose.
# From Secrets, as AGENTOPS__AUTH_API__JWT_SECRET, AGENTOPS__ALERTER__WEBHOOKS and
# AGENTOPS__ALERTER__PAGERDUTY__ROUTING_KEY.
NOT_IN_CONFIG = {"auth_api.jwt_secret", "alerter.webhooks", "alerter.pagerduty.routing_key"}
# Schema definitions of Kubernetes objects the chart passes through (their fields stay open).
KUBERNETES_PASSTHROUGH = {"envVar"}
RELEASE = "agentops"
NAMESPACE = "agentops"


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn):
        """Runs fn(); a returned string is a note, an exception (AssertionError...) a failure."""
        try:
            note = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            self.failed += 1
            msg = str(e).strip() or type(e).__name__
            print(f"FAIL {name}\n     {msg.replace(chr(10), chr(10) + '     ')}", flush=True)
            return False
        self.passed += 1
        print(f"ok   {name}" + (f" ({note})" if note else ""), flush=True)
        return True


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def leaf_paths(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaf_paths(v, prefix + (k,))
        else:
            yield prefix + (k,)


def toml_type(v):
    return {bool: "boolean", int: "integer", float: "float", str: "string"}.get(type(v), type(v).__name__)


def flatten_toml(t, prefix=""):
    out = {}
    for k, v in t.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_toml(v, key + "."))
        else:
            out[key] = v
    return out


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


class Chart:
    def __init__(self, chart_dir, repo_root):
        self.dir = chart_dir
        self.repo_root = repo_root
        helm_dir = os.path.dirname(chart_dir)
        with open(os.path.join(chart_dir, "values.yaml")) as f:
            self.values = yaml.safe_load(f)
        with open(os.path.join(chart_dir, "values.schema.json")) as f:
            self.schema = yaml.safe_load(f)  # JSON is YAML
        with open(os.path.join(chart_dir, "Chart.yaml")) as f:
            self.meta = yaml.safe_load(f)
        with open(os.path.join(repo_root, "settings", "src", "default.toml"), "rb") as f:
            self.settings = flatten_toml(tomllib.load(f))
        self.examples = sorted(glob.glob(os.path.join(helm_dir, "examples", "*.yaml")))
        self.invalid = sorted(glob.glob(os.path.join(helm_dir, "tests", "invalid", "*.yaml")))
        self.templates = {}
        for path in sorted(glob.glob(os.path.join(chart_dir, "templates", "*"))):
            with open(path) as f:
                self.templates[os.path.basename(path)] = f.read()

    def value_sets(self):
        """(label, values file or None, effective values)."""
        sets = [("defaults", None, self.values)]
        for path in self.examples:
            with open(path) as f:
                sets.append((os.path.basename(path), path, deep_merge(self.values, yaml.safe_load(f))))
        return sets


# --------------------------------------------------------------------------------------------
# Static checks
# --------------------------------------------------------------------------------------------

def check_chart_yaml(chart):
    m = chart.meta
    assert m.get("apiVersion") == "v2", "apiVersion must be v2"
    assert m.get("name") == os.path.basename(chart.dir), "name must be the chart directory's name"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", str(m.get("version", ""))), "version is not SemVer"
    assert m.get("appVersion"), "appVersion missing"
    assert m.get("type") == "application", "type must be application"
    assert m.get("kubeVersion"), "kubeVersion missing"
    return f"{m['name']} {m['version']}, appVersion {m['appVersion']}, kubeVersion {m['kubeVersion']}"


def check_schema_is_draft7(chart):
    assert chart.schema.get("$schema", "").startswith("http://json-schema.org/draft-07/"), "$schema is not draft-07"
    jsonschema.Draft7Validator.check_schema(chart.schema)
    # additionalProperties false wherever values.yaml has a nested object the schema describes
    open_objects = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
            open_objects.append(path or "(root)")
        for key in ("properties", "definitions"):
            for k, v in node.get(key, {}).items():
                walk(v, f"{path}.{k}" if path else k)

    walk(chart.schema, "")
    # Kubernetes objects passed through verbatim keep their own fields open.
    open_objects = [o for o in open_objects if o not in KUBERNETES_PASSTHROUGH]
    assert not open_objects, f"objects with properties but without additionalProperties false: {open_objects}"
    return "draft-07, additionalProperties false on every described object"


def schema_errors(chart, values):
    validator = jsonschema.Draft7Validator(chart.schema)
    return sorted(
        (f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(values)),
    )


def check_values_against_schema(chart, label, values):
    errors = schema_errors(chart, values)
    assert not errors, "\n".join(errors)
    return label


VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def template_value_refs(chart):
    """(template, dotted path) of every .Values.x.y and of $alias.x.y where `$alias := .Values`."""
    refs = []
    for name, text in chart.templates.items():
        blocks = re.split(r"\{\{-?\s*define\s", text)
        for block in blocks:
            for m in VALUES_REF.finditer(block):
                refs.append((name, m.group(1)[1:]))
            for alias in re.findall(r"\$(\w+)\s*:=\s*(?:\$root|\$)?\.Values\s", block):
                for m in re.finditer(r"\$" + alias + r"((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", block):
                    refs.append((name, m.group(1)[1:]))
    return refs


def check_value_refs_exist(chart):
    missing = []
    refs = template_value_refs(chart)
    for name, path in refs:
        node = chart.values
        for part in path.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                missing.append(f"{name}: .Values.{path}")
                break
    assert not missing, "referenced in templates but not in values.yaml:\n" + "\n".join(sorted(set(missing)))
    return f"{len(set(p for _, p in refs))} distinct paths"


def check_values_used(chart):
    """Each values.yaml key is read by name (`.key`) or lies under a key given whole to toYaml."""
    text = "\n".join(chart.templates.values())
    verbatim = set(re.findall(r"toYaml\s+[$\w.]*\.(\w+)", text))
    unused = []
    for path in leaf_paths(chart.values):
        if any(p in verbatim for p in path[:-1]):
            continue
        if not re.search(r"\." + re.escape(path[-1]) + r"\b", text):
            unused.append(".".join(path))
    assert not unused, "values.yaml keys no template uses:\n" + "\n".join(unused)
    return f"{sum(1 for _ in leaf_paths(chart.values))} keys"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def helm_template(helm, chart, values_file=None, extra=()):
    cmd = [helm, "template", RELEASE, chart.dir, "--namespace", NAMESPACE, *extra]
    if values_file:
        cmd += ["-f", values_file]
    return run(cmd)


def helm_lint(helm, chart, values_file=None):
    cmd = [helm, "lint", "--strict", chart.dir]
    if values_file:
        cmd += ["-f", values_file]
    return run(cmd)


def render(helm, chart, values_file, kube_version=None):
    extra = ("--kube-version", kube_version) if kube_version else ()
    r = helm_template(helm, chart, values_file, extra)
    assert r.returncode == 0, f"helm template failed:\n{r.stderr}"
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    return docs


def index(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    return out


def config_text(objs):
    cms = [cm for name, cm in objs.get("ConfigMap", {}).items() if "config.toml" in cm.get("data", {})]
    assert len(cms) == 1, f"expected one ConfigMap with config.toml, found {len(cms)}"
    return cms[0]["metadata"]["name"], cms[0]["data"]["config.toml"]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def deployment_for(objs, selector):
    hits = [d for d in objs.get("Deployment", {}).values()
            if matches(selector, d["spec"]["template"]["metadata"].get("labels", {}))]
    return hits


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def settings_key_of_env(name):
    return ".".join(p.lower() for p in name[len("AGENTOPS__"):].split("__"))


def check_k8s_schemas(docs, version):
    errors = []
    skipped = []
    for d in docs:
        kn = f"{d['kind']}/{d['metadata']['name']}"
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            skipped.append(kn)
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{kn}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{kn}: {e.message}")
    assert not errors, "\n".join(errors)
    return f"{len(docs) - len(skipped)} objects" + (f", CRD not in the schemas: {', '.join(skipped)}" if skipped else "")


def check_k8s_schema_can_fail(docs, version):
    """The schema check rejects a typo in a rendered Deployment (so it is not vacuous)."""
    dep = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    try:
        kubernetes_validate.validate(dep, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"refused: {e.message[:70]}"
    raise AssertionError("a Deployment with an unknown field passed the strict schema")


def check_config(chart, objs):
    _, text = config_text(objs)
    rendered = flatten_toml(tomllib.loads(text))
    problems = []
    for key, value in rendered.items():
        if key not in chart.settings:
            problems.append(f"{key}: not a setting (settings/src/default.toml)")
        elif toml_type(value) != toml_type(chart.settings[key]):
            problems.append(f"{key}: {toml_type(value)}, the setting is {toml_type(chart.settings[key])}")
    for key in chart.settings:
        if key not in rendered and key not in NOT_IN_CONFIG:
            problems.append(f"{key}: setting not rendered by the chart")
    for key in ("ingest.listen", "auth_api.listen", "aggregator.metrics_listen", "scorer.metrics_listen", "alerter.metrics_listen"):
        if str(rendered.get(key, "")).startswith(("127.", "localhost", "[::1]")):
            problems.append(f"{key} = {rendered[key]}: loopback is unreachable for probes and Services")
    if not str(rendered.get("store.url", "")).startswith("scylla://"):
        problems.append("store.url is not scylla://")
    if "auth_api.jwt_secret" in rendered:
        problems.append("the JWT secret is in the ConfigMap")
    assert not problems, "\n".join(problems)
    return f"{len(rendered)} settings"


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def check_workloads(chart, values, objs):
    problems = []
    cm_name, text = config_text(objs)
    config = flatten_toml(tomllib.loads(text))
    checksum = hashlib.sha256(text.rstrip("\n").encode()).hexdigest()
    listen_of = {"ingest": "ingest.listen", "auth-api": "auth_api.listen",
                 "aggregator": "aggregator.metrics_listen", "scorer": "scorer.metrics_listen",
                 "alerter": "alerter.metrics_listen"}
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in objs.get("HorizontalPodAutoscaler", {}).values()}
    secrets = objs.get("Secret", {})
    existing = {values["authApi"]["jwt"]["existingSecret"], values["alerter"]["existingSecret"]} - {""}
    seen = set()
    for name, dep in objs.get("Deployment", {}).items():
        pod = dep["spec"]["template"]
        spec = pod["spec"]
        p = lambda msg: problems.append(f"Deployment/{name}: {msg}")  # noqa: E731
        if not matches(dep["spec"]["selector"]["matchLabels"], pod["metadata"].get("labels", {})):
            p("selector does not match the pod labels")
        if pod["metadata"].get("annotations", {}).get("checksum/config") != checksum:
            p("checksum/config is not the sha256 of the rendered config.toml")
        if spec.get("enableServiceLinks") is not False:
            p("enableServiceLinks is not false")
        if spec.get("automountServiceAccountToken") is not False:
            p("automountServiceAccountToken is not false")
        if "terminationGracePeriodSeconds" not in spec:
            p("no terminationGracePeriodSeconds")
        psc = spec.get("securityContext", {})
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            binary = (c.get("args") or [None])[0]
            seen.add(binary)
            if binary not in BINARIES:
                p(f"container {c['name']}: args[0] {binary!r} is not one of {BINARIES}")
                continue
            ports = {pt["name"]: pt["containerPort"] for pt in c.get("ports", [])}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
                get = c.get(probe, {}).get("httpGet")
                if not get:
                    p(f"{binary}: no {probe}")
                    continue
                if get.get("path") != path:
                    p(f"{binary}: {probe} path {get.get('path')} (want {path})")
                if get.get("port") not in ports:
                    p(f"{binary}: {probe} port {get.get('port')} is not a declared container port")
            want_port = port_of(config[listen_of[binary]])
            if want_port not in ports.values():
                p(f"{binary}: {listen_of[binary]} port {want_port} is not a container port {sorted(ports.values())}")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        p(f"{binary}: no resources.{kind}.{r}")
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                p(f"{binary}: root filesystem not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                p(f"{binary}: allowPrivilegeEscalation not false")
            if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                p(f"{binary}: runAsNonRoot not set")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                p(f"{binary}: capabilities not dropped")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                p(f"{binary}: no RuntimeDefault seccomp profile")
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                p(f"{binary}: /tmp not mounted (read-only root filesystem)")
            env = env_map(c)
            cfg = env.get("AGENTOPS_CONFIG", {}).get("value", "")
            mount = mounts.get(os.path.dirname(cfg))
            vol = volumes.get(mount["name"]) if mount else None
            if not (vol and vol.get("configMap", {}).get("name") == cm_name and os.path.basename(cfg) == "config.toml"):
                p(f"{binary}: AGENTOPS_CONFIG={cfg!r} is not the mounted ConfigMap {cm_name}")
            for var, e in env.items():
                if var.startswith("AGENTOPS__") and settings_key_of_env(var) not in chart.settings:
                    p(f"{binary}: {var} names no setting")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    s = secrets.get(ref["name"])
                    if s is not None:
                        if ref["key"] not in s.get("data", {}):
                            p(f"{binary}: Secret {ref['name']} has no key {ref['key']}")
                        elif var == "AGENTOPS__AUTH_API__JWT_SECRET" and len(base64.b64decode(s["data"][ref["key"]])) < 32:
                            p(f"{binary}: the JWT secret is shorter than 32 bytes")
                    elif ref["name"] not in existing:
                        p(f"{binary}: secretKeyRef {ref['name']} is neither rendered nor an existingSecret of the values")
            if binary == "auth-api" and "AGENTOPS__AUTH_API__JWT_SECRET" not in env:
                p("auth-api: no AGENTOPS__AUTH_API__JWT_SECRET")
            if binary in CONSUMERS:
                key = CONSUMERS[binary]
                replicas = dep["spec"].get("replicas", 1)
                if config[f"{key}.assignment"] == "group":
                    if replicas > config["kafka.partitions"]:
                        p(f"{replicas} replicas > kafka.partitions {config['kafka.partitions']}")
                elif replicas != 1:
                    p(f"assignment {config[f'{key}.assignment']} with {replicas} replicas")
                if name in hpa_targets:
                    p("a consumer-group member is autoscaled")
                if dep["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge") != 0:
                    p("rolling update may surge past the partition count (maxSurge != 0)")
            if binary == "scorer":
                model_dir = config["scorer.model_dir"]
                if values["scorer"]["models"]["source"] != "image" and model_dir not in mounts:
                    p(f"scorer: model_dir {model_dir} is not mounted")
        if name in hpa_targets and "replicas" in dep["spec"]:
            p("autoscaled but spec.replicas is set (an upgrade would reset the HPA's count)")
    enabled = {b for b, k in (("ingest", "ingest"), ("aggregator", "aggregator"), ("scorer", "scorer"), ("auth-api", "authApi"),
                              ("alerter", "alerter"))
               if values[k]["enabled"]}
    if seen != enabled:
        problems.append(f"Deployments for {sorted(seen)}, enabled: {sorted(enabled)}")
    assert not problems, "\n".join(problems)
    return f"{len(objs.get('Deployment', {}))} Deployments"


def check_services_pdbs_hpas(objs):
    problems = []
    for name, svc in objs.get("Service", {}).items():
        deps = deployment_for(objs, svc["spec"]["selector"])
        if len(deps) != 1:
            problems.append(f"Service/{name}: selector matches {len(deps)} Deployments")
            continue
        ports = {pt["name"] for c in deps[0]["spec"]["template"]["spec"]["containers"] for pt in c.get("ports", [])}
        for pt in svc["spec"]["ports"]:
            if isinstance(pt["targetPort"], str) and pt["targetPort"] not in ports:
                problems.append(f"Service/{name}: targetPort {pt['targetPort']} not a container port of {deps[0]['metadata']['name']}")
    for name, pdb in objs.get("PodDisruptionBudget", {}).items():
        deps = deployment_for(objs, pdb["spec"]["selector"]["matchLabels"])
        if len(deps) != 1:
            problems.append(f"PodDisruptionBudget/{name}: selector matches {len(deps)} Deployments")
    for name, hpa in objs.get("HorizontalPodAutoscaler", {}).items():
        target = objs.get("Deployment", {}).get(hpa["spec"]["scaleTargetRef"]["name"])
        if not target:
            problems.append(f"HorizontalPodAutoscaler/{name}: no Deployment {hpa['spec']['scaleTargetRef']['name']}")
            continue
        if hpa["spec"]["minReplicas"] > hpa["spec"]["maxReplicas"]:
            problems.append(f"HorizontalPodAutoscaler/{name}: minReplicas > maxReplicas")
    for name, sm in objs.get("ServiceMonitor", {}).items():
        port_names = {pt["name"] for s in objs.get("Service", {}).values() for pt in s["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            if ep["port"] not in port_names:
                problems.append(f"ServiceMonitor/{name}: endpoint port {ep['port']} on no Service")
        if not any(matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"]) for s in objs["Service"].values()):
            problems.append(f"ServiceMonitor/{name}: selects no Service")
    for kind, items in objs.items():
        for name, o in items.items():
            labels = o["metadata"].get("labels", {})
            if labels.get("app.kubernetes.io/instance") != RELEASE or "app.kubernetes.io/name" not in labels:
                problems.append(f"{kind}/{name}: missing app.kubernetes.io labels")
    assert not problems, "\n".join(problems)
    return ", ".join(f"{len(objs.get(k, {}))} {k}s" for k in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"))


def check_jobs(values, objs):
    problems = []
    _, text = config_text(objs)
    jobs = objs.get("Job", {})
    want = {"migrate": values["migrations"]["enabled"], "topics": values["topics"]["enabled"]}
    for suffix, enabled in want.items():
        found = [n for n in jobs if n.endswith(f"-{suffix}")]
        if bool(found) != enabled:
            problems.append(f"Job *-{suffix}: enabled={enabled}, rendered={bool(found)}")
    for name, job in jobs.items():
        ann = job["metadata"].get("annotations", {})
        hooks = set(ann.get("helm.sh/hook", "").split(","))
        if not {"pre-install", "pre-upgrade"} <= hooks:
            problems.append(f"Job/{name}: not a pre-install,pre-upgrade hook ({ann.get('helm.sh/hook')})")
        spec = job["spec"]["template"]["spec"]
        if spec.get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append(f"Job/{name}: restartPolicy {spec.get('restartPolicy')}")
        for c in spec["containers"]:
            env = env_map(c)
            if env.get("AGENTOPS_CONFIG_TOML", {}).get("value", "").rstrip("\n") != text.rstrip("\n"):
                problems.append(f"Job/{name}: its config differs from the ConfigMap's")
            if not re.search(r"exec (ingest|auth-api|aggregator|scorer) \S+", c["command"][-1]):
                problems.append(f"Job/{name}: command does not exec a service binary")
            if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"Job/{name}: root filesystem not read-only")
            if "/tmp" not in {m["mountPath"] for m in c.get("volumeMounts", [])}:
                problems.append(f"Job/{name}: /tmp not writable")
    assert not problems, "\n".join(problems)
    return f"{len(jobs)} hook Jobs"


def find_bin_dir(repo_root, explicit):
    if explicit:
        return explicit if all(os.access(os.path.join(explicit, b), os.X_OK) for b in BINARIES) else None
    best = None
    for profile in ("debug", "release"):
        d = os.path.join(repo_root, "target", profile)
        paths = [os.path.join(d, b) for b in BINARIES]
        if all(os.access(p, os.X_OK) for p in paths):
            mtime = min(os.path.getmtime(p) for p in paths)
            if best is None or mtime > best[0]:
                best = (mtime, d)
    return best[1] if best else None


def check_with_binaries(bin_dir, values, objs):
    """`<bin> check-config` with each rendered workload's config and environment."""
    _, text = config_text(objs)
    secrets = objs.get("Secret", {})
    ran = []
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "config.toml")
        with open(cfg, "w") as f:
            f.write(text)
        workloads = [("Deployment", n, d) for n, d in objs.get("Deployment", {}).items()]
        workloads += [("Job", n, j) for n, j in objs.get("Job", {}).items()]
        for kind, name, obj in workloads:
            for c in obj["spec"]["template"]["spec"]["containers"]:
                env = {"PATH": "/usr/bin:/bin", "HOME": tmp}
                for var, e in env_map(c).items():
                    if "value" in e:
                        env[var] = e["value"]
                    elif "secretKeyRef" in e.get("valueFrom", {}):
                        ref = e["valueFrom"]["secretKeyRef"]
                        s = secrets.get(ref["name"])
                        if s is None and ref.get("optional"):
                            continue  # a key of a Secret the user manages, maybe absent
                        env[var] = base64.b64decode(s["data"][ref["key"]]).decode() if s else "x" * 32
                if kind == "Job":
                    binary = re.search(r"exec (\S+)", c["command"][-1]).group(1)
                    if binary == "auth-api":
                        # `auth-api migrate` loads the settings but never reads the JWT key;
                        # `auth-api check-config` insists on one.
                        env.setdefault("AGENTOPS__AUTH_API__JWT_SECRET", "x" * 32)
                    job_cfg = os.path.join(tmp, f"{name}.toml")
                    with open(job_cfg, "w") as f:
                        f.write(env.pop("AGENTOPS_CONFIG_TOML"))
                    env["AGENTOPS_CONFIG"] = job_cfg
                else:
                    binary = c["args"][0]
                    env["AGENTOPS_CONFIG"] = cfg
                r = run([os.path.join(bin_dir, binary), "check-config"], env=env)
                ran.append(binary)
                if r.returncode != 0:
                    problems.append(f"{kind}/{name}: {binary} check-config exited {r.returncode}:\n{r.stderr.strip()[-800:]}")
                elif kind == "Deployment" and binary == "auth-api" and "jwt_secret" not in r.stdout:
                    problems.append(f"{kind}/{name}: check-config printed no jwt_secret")
    assert not problems, "\n".join(problems)
    return f"{len(ran)} runs: {', '.join(sorted(set(ran)))}"


def check_invalid(helm, chart, path):
    with open(path) as f:
        text = f.read()
    m = re.search(r"^# expect-(schema|template): (.+)$", text, re.M)
    assert m, "no '# expect-schema: REGEX' or '# expect-template: REGEX' line"
    kind, pattern = m.group(1), m.group(2).strip()
    r = helm_template(helm, chart, path)
    assert r.returncode != 0, "helm template accepted it"
    assert re.search(pattern, r.stderr), f"helm template refused it, but not with /{pattern}/:\n{r.stderr.strip()}"
    errors = schema_errors(chart, deep_merge(chart.values, yaml.safe_load(text)))
    if kind == "schema":
        lint = helm_lint(helm, chart, path)
        assert lint.returncode != 0, "helm lint --strict accepted it"
        assert errors, "the Python jsonschema validator accepted it (helm refused it)"
    else:
        # Helm's lint mode turns `fail` into an INFO message by design; template, install and
        # upgrade refuse. So template-level refusals are checked with `helm template` only.
        assert not errors, f"refused by the schema, expected the template check: {errors}"
    line = next((ln for ln in r.stderr.splitlines() if re.search(pattern, ln)), "")
    line = re.sub(r"^.*?execution error at \([^)]*\): ", "", line.strip())
    return f"{kind}: {line[:100]}"


def dockerignored(repo_root, relpath):
    import fnmatch
    with open(os.path.join(repo_root, ".dockerignore")) as f:
        patterns = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(p, pat.lstrip("/")) or fnmatch.fnmatch(p, pat.lstrip("/").removeprefix("**/"))
               for pat in patterns for p in prefixes)


def check_dockerfile(chart):
    """The Dockerfile parses (BuildKit's parser) and provides what the chart relies on."""
    import dockerfile

    repo = chart.repo_root
    cmds = dockerfile.parse_file(os.path.join(repo, "Dockerfile"))
    stages = [i for i, c in enumerate(cmds) if c.cmd == "FROM"]
    assert len(stages) >= 2, "expected a multi-stage build"
    final = cmds[stages[-1]:]
    problems = []
    values = chart.values
    user = [c.value[0] for c in final if c.cmd == "USER"]
    if not user or user[-1].split(":")[0] != str(values["podSecurityContext"]["runAsUser"]):
        problems.append(f"final USER {user} is not podSecurityContext.runAsUser {values['podSecurityContext']['runAsUser']}")
    dests = [c.value[-1].rstrip("/") for c in final if c.cmd == "COPY"]
    for need, what in ((values["scorer"]["onnxruntimePath"], "scorer.onnxruntimePath"),
                       (values["scorer"]["models"]["imagePath"], "scorer.models.imagePath"),
                       ("/usr/local/bin", "the binaries on PATH")):
        if need.rstrip("/") not in dests:
            problems.append(f"no COPY to {need} ({what})")
    build_runs = " ".join(c.value[0] for c in cmds if c.cmd == "RUN")
    for b in BINARIES:
        if f"target/release/{b}" not in build_runs:
            problems.append(f"the build stage does not copy out {b}")
    for c in cmds:
        if c.cmd == "ENV" and any(str(v).startswith("AGENTOPS__") for v in c.value[::2]):
            problems.append(f"line {c.start_line}: ENV AGENTOPS__* would override the chart's config.toml")
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            for src in c.value[:-1]:
                if src == ".":
                    continue
                if not os.path.exists(os.path.join(repo, src)):
                    problems.append(f"line {c.start_line}: COPY source {src} does not exist")
                elif dockerignored(repo, src):
                    problems.append(f"line {c.start_line}: COPY source {src} is excluded by .dockerignore")
    for needed in ("Cargo.toml", "Cargo.lock", "schemas", "store", "settings", "scorer/models", "scripts/lib.sh"):
        if dockerignored(repo, needed):
            problems.append(f".dockerignore excludes {needed}, which the build needs")
    # The model set the image ships must be one the scorer accepts (it checks the SHA-256s).
    models = os.path.join(repo, "scorer", "models")
    with open(os.path.join(models, "manifest.json")) as f:
        manifest = yaml.safe_load(f)
    for key, m in manifest["models"].items():
        with open(os.path.join(models, m["file"]), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != m["sha256"]:
                problems.append(f"scorer/models/{m['file']}: SHA-256 differs from manifest.json ({key})")
    if manifest.get("window_secs") != values["aggregator"]["windowSecs"]:
        problems.append(f"aggregator.windowSecs {values['aggregator']['windowSecs']} != the models' window_secs {manifest.get('window_secs')}")
    assert not problems, "\n".join(problems)
    return f"{len(stages)} stages, model set {manifest.get('version')}"


def check_checks_can_fail(chart, values, docs):
    """The rendered-object checks refuse broken objects (so they are not vacuous)."""
    def broken(mutate):
        objs = index(copy.deepcopy(docs))
        mutate(objs)
        return objs

    def first(objs, kind, component):
        return next(o for n, o in objs[kind].items() if n.endswith(component))

    def probe(objs):
        c = first(objs, "Deployment", "-ingest")["spec"]["template"]["spec"]["containers"][0]
        c["readinessProbe"]["httpGet"]["path"] = "/healthz"

    def float_setting(objs):
        cm = next(iter(objs["ConfigMap"].values()))
        cm["data"]["config.toml"] = cm["data"]["config.toml"].replace("max_body_bytes = 4194304", "max_body_bytes = 4.194304e+06")

    def target_port(objs):
        first(objs, "Service", "-ingest")["spec"]["ports"][0]["targetPort"] = "web"

    def surge(objs):
        first(objs, "Deployment", "-aggregator")["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = 1

    cases = [("readiness on /healthz", lambda o: check_workloads(chart, values, o), probe),
             ("a float setting", lambda o: check_config(chart, o), float_setting),
             ("a Service targetPort no container has", check_services_pdbs_hpas, target_port),
             ("a consumer rollout that surges", lambda o: check_workloads(chart, values, o), surge)]
    for what, check, mutate in cases:
        try:
            check(broken(mutate))
        except AssertionError:
            continue
        raise AssertionError(f"not refused: {what}")
    return f"{len(cases)} broken variants refused"


def check_package(helm, chart):
    import tarfile

    with tempfile.TemporaryDirectory() as tmp:
        r = run([helm, "package", chart.dir, "--destination", tmp])
        assert r.returncode == 0, r.stdout + r.stderr
        (tgz,) = glob.glob(os.path.join(tmp, "*.tgz"))
        with tarfile.open(tgz) as t:
            names = t.getnames()
    name = chart.meta["name"]
    for need in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt"):
        assert f"{name}/{need}" in names, f"{need} not packaged"
    return f"{os.path.basename(tgz)}, {len(names)} files"


def check_rules(helm, chart):
    """The pipeline's alert rules: a ConfigMap without the Prometheus Operator's CRDs, a
    PrometheusRule with them, both carrying ops/rules/agentops.rules.yml unchanged."""
    with open(os.path.join(chart.repo_root, "ops/rules/agentops.rules.yml")) as f:
        text = f.read()
    kinds = []
    for extra in ((), ("--api-versions", "monitoring.coreos.com/v1/PrometheusRule")):
        r = helm_template(helm, chart, None, ("-s", "templates/rules.yaml", *extra))
        assert r.returncode == 0, r.stderr
        (doc,) = [d for d in yaml.safe_load_all(r.stdout) if d]
        kinds.append(doc["kind"])
        if doc["kind"] == "ConfigMap":
            assert doc["data"]["agentops.rules.yml"].rstrip("\n") == text.rstrip("\n"), "ConfigMap rules differ"
        else:
            assert doc["spec"] == yaml.safe_load(text), "PrometheusRule spec differs from the rules file"
    assert kinds == ["ConfigMap", "PrometheusRule"], kinds
    return " then ".join(kinds)


def check_kube_version_floor(helm, chart):
    r = helm_template(helm, chart, None, ("--kube-version", "1.24.0"))
    assert r.returncode != 0, "rendered for Kubernetes 1.24 despite kubeVersion"
    assert "kubeVersion" in r.stderr or "incompatible" in r.stderr, r.stderr
    return "1.24 refused"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--helm", action="append", required=True, help="helm binary (repeatable)")
    ap.add_argument("--chart", required=True)
    ap.add_argument("--repo-root", required=True)
    ap.add_argument("--kube-versions", default="1.25.0,1.30.0,1.35.0")
    ap.add_argument("--bin-dir", default=os.environ.get("AGENTOPS_BIN_DIR"),
                    help="directory with the built binaries (default: newest of target/debug, target/release)")
    args = ap.parse_args()
    chart = Chart(os.path.abspath(args.chart), os.path.abspath(args.repo_root))
    kube_versions = [v.strip() for v in args.kube_versions.split(",") if v.strip()]
    rep = Report()

    rep.check("Chart.yaml", lambda: check_chart_yaml(chart))
    rep.check("values.schema.json is a draft-07 schema", lambda: check_schema_is_draft7(chart))
    for label, _, values in chart.value_sets():
        rep.check(f"values against the schema (python jsonschema): {label}",
                  lambda v=values, l=label: check_values_against_schema(chart, l, v))
    rep.check("every .Values path in the templates is in values.yaml", lambda: check_value_refs_exist(chart))
    rep.check("every values.yaml key is used by a template", lambda: check_values_used(chart))
    rep.check("Dockerfile parses and provides the chart's paths, user and model set", lambda: check_dockerfile(chart))

    bin_dir = find_bin_dir(chart.repo_root, args.bin_dir)
    for helm in args.helm:
        version = run([helm, "version", "--short"]).stdout.strip() or helm
        tag = f"helm {version.split('+')[0]}"
        rep.check(f"{tag} | kubeVersion floor", lambda h=helm: check_kube_version_floor(h, chart))
        rep.check(f"{tag} | package", lambda h=helm: check_package(h, chart))
        rep.check(f"{tag} | alert rules: ConfigMap, or PrometheusRule with the CRD", lambda h=helm: check_rules(h, chart))
        for label, path, values in chart.value_sets():
            def lint(h=helm, p=path):
                r = helm_lint(h, chart, p)
                assert r.returncode == 0, r.stdout + r.stderr
                return r.stdout.strip().splitlines()[-1]
            rep.check(f"{tag} | lint --strict | {label}", lint)
            docs = []

            def do_render(h=helm, p=path):
                docs.extend(render(h, chart, p))
                kinds = {}
                for d in docs:
                    kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
                return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            if not rep.check(f"{tag} | template | {label}", do_render):
                continue
            objs = index(docs)
            for kv in kube_versions:
                rep.check(f"{tag} | Kubernetes {kv} schemas (strict) | {label}", lambda v=kv, d=docs: check_k8s_schemas(d, v))
            rep.check(f"{tag} | config.toml against settings/src/default.toml | {label}", lambda o=objs: check_config(chart, o))
            rep.check(f"{tag} | Deployments | {label}", lambda v=values, o=objs: check_workloads(chart, v, o))
            rep.check(f"{tag} | Services, PDBs, HPAs, ServiceMonitor, labels | {label}", lambda o=objs: check_services_pdbs_hpas(o))
            rep.check(f"{tag} | hook Jobs | {label}", lambda v=values, o=objs: check_jobs(v, o))
            if bin_dir:
                rep.check(f"{tag} | check-config with {os.path.relpath(bin_dir, chart.repo_root)} binaries | {label}",
                          lambda v=values, o=objs: check_with_binaries(bin_dir, v, o))
            if label == "defaults":
                rep.check(f"{tag} | the strict schema check can fail", lambda d=docs: check_k8s_schema_can_fail(d, kube_versions[-1]))
                rep.check(f"{tag} | the rendered-object checks can fail", lambda v=values, d=docs: check_checks_can_fail(chart, v, d))
        for path in chart.invalid:
            rep.check(f"{tag} | refused: tests/invalid/{os.path.basename(path)}", lambda h=helm, p=path: check_invalid(h, chart, p))
    if not bin_dir:
        print("skip check-config: no built binaries in target/debug or target/release (cargo build --bins)")
    print(f"{rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
