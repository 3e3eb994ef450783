#!/usr/bin/env bash
# Offline checks of deploy/ (no cluster, no Docker): every YAML parses, kustomization.yaml lists every manifest, every
# environment variable named in deploy/ is one Shared/ReelayConfig reads (and every one it reads is set somewhere).
# Runs the optional linters when installed: kubectl (kustomize render), kubernetes-validate (pip), yamllint (pip),
# promtool (Debian package prometheus), shellcheck.
#
#   deploy/check.sh          exit status 0 when everything passed
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$DEPLOY")"
cd "$DEPLOY"

failures=0
passes=0
pass() { echo "ok    $*"; passes=$((passes + 1)); }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }
skip() { echo "skip  $* (not installed)"; }

# 1. Every YAML file parses; the structural checks read the parsed documents.
structure_ok=1
python3 - "$ROOT" <<'EOF' || structure_ok=0
import glob, os, re, sys
import yaml

root = sys.argv[1]
ok = True

def problem(message):
    global ok
    ok = False
    print("      " + message)

documents = {}
for path in sorted(glob.glob("**/*.yaml", recursive=True)) + [".yamllint"]:
    try:
        with open(path) as handle:
            documents[path] = [d for d in yaml.safe_load_all(handle) if d is not None]
    except yaml.YAMLError as error:
        problem(f"{path}: does not parse: {error}")

# kustomization.yaml lists every manifest of kubernetes/ except the two documented exceptions, and nothing missing.
kustomization = documents.get("kubernetes/kustomization.yaml", [{}])[0]
listed = set(kustomization.get("resources", []))
present = {os.path.basename(p) for p in glob.glob("kubernetes/*.yaml")} - {"kustomization.yaml"}
not_applied = {"secret.example.yaml", "keda-scaledobject.yaml"}
for name in sorted(present - listed - not_applied):
    problem(f"kubernetes/{name} is not listed in kustomization.yaml")
for name in sorted(listed - present):
    problem(f"kustomization.yaml lists {name}, which does not exist")

# The variables ReelayConfiguration reads, from its `variables` list.
source = open(os.path.join(root, "Shared/ReelayConfig/ReelayConfiguration.swift")).read()
block = re.search(r"public static let variables = \[(.*?)\]", source, re.S)
known = set(re.findall(r'"([A-Z0-9_]+)"', block.group(1))) if block else set()
if not known:
    problem("could not read ReelayConfiguration.variables")

used = {}
def use(name, where):
    used.setdefault(name, set()).add(where)

def walk_containers(spec, where):
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for env in container.get("env", []):
            use(env["name"], where)
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["key"] != env["name"]:
                problem(f"{where}: env {env['name']} reads Secret key {ref['key']} (names must match)")

for path, docs in documents.items():
    for doc in docs:
        kind = doc.get("kind")
        if kind == "ConfigMap":
            for name in doc.get("data", {}):
                use(name, path)
        elif kind == "Secret":
            for name in doc.get("stringData", {}):
                use(name, path)
        elif kind in ("Deployment", "Job"):
            walk_containers(doc["spec"]["template"]["spec"], f"{path} {kind}/{doc['metadata']['name']}")

# The Dockerfile's ENV defaults, except the image's own variables.
dockerfile = open("Dockerfile").read()
env_block = re.search(r"^ENV (.*?)(?:\n\n|\nUSER)", dockerfile, re.S | re.M)
for name in re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", env_block.group(1) if env_block else ""):
    if name not in ("REELAY_SERVICE", "SWIFT_BACKTRACE"):
        use(name, "Dockerfile")

for name in sorted(set(used) - known):
    problem(f"{name} (in {', '.join(sorted(used[name]))}) is not a variable ReelayConfiguration reads")
for name in sorted(known - set(used)):
    problem(f"{name} is read by ReelayConfiguration but set nowhere in deploy/ (add it to configmap.yaml with its default)")

sys.exit(0 if ok else 1)
EOF
if [ "$structure_ok" = 1 ]; then
    pass "YAML parses; kustomization lists every manifest; env names match ReelayConfiguration"
else
    fail "YAML parsing, kustomization or env names (see above)"
fi

# 2. Kustomize renders, and the rendered objects validate against the Kubernetes schemas.
if command -v kubectl >/dev/null; then
    rendered="$(mktemp)"
    trap 'rm -f "$rendered"' EXIT
    if kubectl kustomize kubernetes >"$rendered"; then
        pass "kubectl kustomize kubernetes ($(grep -c '^kind:' "$rendered") objects)"
        if command -v kubernetes-validate >/dev/null; then
            if kubernetes-validate --strict --quiet "$rendered" kubernetes/secret.example.yaml; then
                pass "kubernetes-validate --strict"
            else
                fail "kubernetes-validate --strict"
            fi
        else
            skip "kubernetes-validate"
        fi
    else
        fail "kubectl kustomize kubernetes"
    fi
else
    skip "kubectl"
fi

# 3. Linters.
if command -v yamllint >/dev/null; then
    if yamllint -s -c .yamllint .; then pass "yamllint"; else fail "yamllint"; fi
else
    skip "yamllint"
fi
if command -v promtool >/dev/null; then
    if promtool check rules prometheus/alerts.yaml >/dev/null && promtool test rules prometheus/alerts_test.yaml >/dev/null; then
        pass "promtool check rules + test rules"
    else
        fail "promtool (run: promtool test rules deploy/prometheus/alerts_test.yaml)"
    fi
else
    skip "promtool"
fi
if command -v shellcheck >/dev/null; then
    if shellcheck -s sh entrypoint.sh && shellcheck check.sh; then pass "shellcheck"; else fail "shellcheck"; fi
else
    skip "shellcheck"
fi

# 4. No alert may depend on Reelay's own metrics: /metrics is not exposed yet.
if grep -nE '(^|[^a-z_])reelay_[a-z_]+' prometheus/alerts.yaml; then
    fail "prometheus/alerts.yaml references reelay_* metrics"
else
    pass "no reelay_* metrics in alerts"
fi

echo "deploy checks: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
