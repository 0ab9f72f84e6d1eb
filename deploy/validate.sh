#!/usr/bin/env bash
# Offline checks of the deployment files (no Docker engine or cluster needed): every YAML file
# parses, the Dockerfile builds every product, compose and Kubernetes agree with the code on
# binaries, ports, probes and settings. Prints each failure and exits 1 if there is any.
# Needs python3 with PyYAML; runs shellcheck and hadolint too when they are installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
status=0

python3 - "$root" <<'PY' || status=1
import os
import re
import sys

try:
    import yaml
except ImportError:
    sys.exit("validate: python3 has no PyYAML (pip install pyyaml)")

ROOT = sys.argv[1]
DEPLOY = os.path.join(ROOT, "deploy")
DOCKERFILE = os.path.join(DEPLOY, "docker", "Dockerfile")
COMPOSE = os.path.join(DEPLOY, "compose", "docker-compose.yml")
K8S = os.path.join(DEPLOY, "k8s")

# The facts the files must agree with (docs/deployment.md; cross-checked against the code below).
PRODUCTS = ["gateway", "orchestrator", "agent-worker", "voice-worker", "workflow-runner", "notifier", "switchboard"]
PORTS = {"gateway": 8080, "orchestrator": 8081, "agent-worker": 8082, "voice-worker": 8083,
         "workflow-runner": 8084, "notifier": 8085}
ADMIN_PORTS = {name: port + 1000 for name, port in PORTS.items()}  # /readyz, /metrics (issue 14 item 5)
SERVICES = list(PORTS)
WORKERS = [s for s in SERVICES if s != "gateway"]
ENV_COMMON = {"SWITCHBOARD_KAFKA_BROKERS", "SWITCHBOARD_REDIS_URL", "SWITCHBOARD_POSTGRES_URL",
              "SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_INSTANCE_ID", "SWITCHBOARD_HTTP_HOST",
              "SWITCHBOARD_HTTP_PORT", "SWITCHBOARD_LOG_LEVEL", "SWITCHBOARD_LOG_FORMAT",
              "SWITCHBOARD_ADMIN_HOST", "SWITCHBOARD_ADMIN_PORT", "SWITCHBOARD_DEVELOPMENT_MODE",
              "SWITCHBOARD_JWT_ISSUER", "SWITCHBOARD_JWT_AUDIENCE", "SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS",
              "SWITCHBOARD_DEVICE_TOKEN_SECRET", "SWITCHBOARD_KAFKA_PROPERTIES"}
# Secrets published in this repository: the services refuse them outside development mode.
PUBLISHED_SECRETS = {"switchboard-development-secret-not-for-production", "switchboard-development-secret",
                     "REPLACE-ME-with-a-long-random-secret"}
ENV_AGENT = {"SWITCHBOARD_AGENT_TOKEN_RATE", "SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS"}
# Every setting docs/configuration.md documents in its tables may be named by the deployment files.
ENV_DOCUMENTED = set(re.findall(r"^\| `(SWITCHBOARD_[A-Z0-9_]+)`",
                                open(os.path.join(ROOT, "docs", "configuration.md"), encoding="utf-8").read(), re.M))
ENV_ALL = ENV_COMMON | ENV_AGENT | ENV_DOCUMENTED
PARTITIONS = 8  # per topic; replicas of a worker kind beyond it get no partition
GRACE_SECONDS = 50
# What the binaries and librdkafka load, and what voice-worker and the healthcheck run; the image
# builds take them from deploy/docker/runtime-packages.txt (both of them: see the checks below).
RUNTIME_PACKAGES = ["libhiredis0.14", "libopus0", "libssl3", "libsasl2-2", "libzstd1", "liblz4-1", "libcurl4",
                    "zlib1g", "ca-certificates", "espeak-ng", "libpocketsphinx3", "libsphinxbase3",
                    "pocketsphinx-en-us", "curl", "tini"]
PACKAGES_FILE = os.path.join(DEPLOY, "docker", "runtime-packages.txt")
IMAGES_SCRIPT = os.path.join(DEPLOY, "scripts", "images.sh")

passed = 0
failures = []
warnings = []


def rel(path):
    return os.path.relpath(path, ROOT)


def check(condition, message):
    """Counts a check; records `message` (where: what is wrong) when it fails."""
    global passed
    if condition:
        passed += 1
    else:
        failures.append(message)
    return condition


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


# --- YAML: every file parses, with duplicate keys rejected (PyYAML would keep the last silently) --

class StrictLoader(yaml.SafeLoader):
    pass


def construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)

documents = {}  # path -> list of documents
for folder, _, files in os.walk(DEPLOY):
    for name in sorted(files):
        if name.endswith((".yaml", ".yml")):
            path = os.path.join(folder, name)
            try:
                documents[path] = [d for d in yaml.load_all(read(path), Loader=StrictLoader) if d is not None]
                check(True, "")
            except yaml.YAMLError as error:
                check(False, f"{rel(path)}: does not parse: {error}")
check(bool(documents), "deploy/: no YAML files found")


# --- The code: products, default ports, partitions and settings the files must match ------------

def code_facts():
    package = read(os.path.join(ROOT, "Package.swift"))
    found = re.findall(r'executable:\s*"([^"]+)"', package) + re.findall(r'\.executable\(name:\s*"([^"]+)"', package)
    check(sorted(found) == sorted(PRODUCTS),
          f"Package.swift: executables {sorted(found)} differ from the documented products {sorted(PRODUCTS)}")

    configuration_path = os.path.join(ROOT, "Shared", "SwitchboardRuntime", "Configuration.swift")
    if os.path.exists(configuration_path):
        configuration = read(configuration_path)
        kebab = lambda name: re.sub(r"([a-z])([A-Z])", r"\1-\2", name).lower()
        ports = {kebab(case): int(port) for case, port in re.findall(r"case \.(\w+):\s*(\d+)", configuration)}
        check(ports == PORTS, f"{rel(configuration_path)}: default ports {ports} differ from {PORTS}")
        for variable in sorted(ENV_COMMON):
            check(variable in configuration or f'"{variable[len("SWITCHBOARD_"):]}"' in configuration,
                  f"{rel(configuration_path)}: documented setting {variable} is not read there")
    else:
        warnings.append(f"{rel(configuration_path)} not found: default ports not cross-checked")

    sources = ""
    for folder in ("Services", "Shared"):
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            sources += "".join(read(os.path.join(base, f)) for f in files if f.endswith(".swift"))
    for variable in sorted(ENV_AGENT):
        if variable not in sources and f'"{variable[len("SWITCHBOARD_"):]}"' not in sources:
            warnings.append(f"{variable} is documented but not read by any Swift source yet")

    topics_path = os.path.join(ROOT, "Shared", "SwitchboardContracts", "Topics.swift")
    if os.path.exists(topics_path):
        counts = {int(n) for n in re.findall(r'TopicSpec\(\s*name:\s*"[^"]+",\s*partitions:\s*(\d+)', read(topics_path))}
        check(counts == {PARTITIONS}, f"{rel(topics_path)}: partition counts {sorted(counts)} are not all {PARTITIONS}")
    else:
        warnings.append(f"{rel(topics_path)} not found: partition count not cross-checked")


code_facts()


# --- Every SWITCHBOARD_* name written anywhere in the deployment files is a documented one ------

scanned = [DOCKERFILE, COMPOSE, os.path.join(ROOT, "docs", "deployment.md")]
scanned += [os.path.join(K8S, f) for f in sorted(os.listdir(K8S))] if os.path.isdir(K8S) else []
for path in scanned:
    if not os.path.exists(path):
        check(False, f"{rel(path)}: missing")
        continue
    for number, line in enumerate(read(path).splitlines(), 1):
        for variable in re.findall(r"\bSWITCHBOARD_[A-Z0-9_]+", line):
            check(variable in ENV_ALL, f"{rel(path)}:{number}: {variable} is not a documented setting")


def check_environment(where, service, names):
    for variable in names:
        check(variable.startswith("SWITCHBOARD_") and variable in ENV_ALL,
              f"{where}: environment variable {variable} is not a documented SWITCHBOARD_* setting")
        if variable in ENV_AGENT:
            check(service == "agent-worker", f"{where}: {variable} is read by agent-worker only")


# --- Dockerfile and .dockerignore ------------------------------------------------------------

if check(os.path.exists(DOCKERFILE), f"{rel(DOCKERFILE)}: missing"):
    dockerfile = read(DOCKERFILE)
    joined = re.sub(r"\\\n", " ", dockerfile)  # continuation lines as one
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", joined, re.M | re.I)
    check(len(stages) >= 2, f"{rel(DOCKERFILE)}: not multi-stage")
    match = re.search(r'^ARG PRODUCTS="([^"]*)"', joined, re.M)
    built = match.group(1).split() if match else []
    check(sorted(built) == sorted(PRODUCTS), f"{rel(DOCKERFILE)}: ARG PRODUCTS {built} is not the product list {PRODUCTS}")
    check(re.search(r"swift build -c release --static-swift-stdlib", joined) is not None,
          f"{rel(DOCKERFILE)}: no `swift build -c release --static-swift-stdlib` (the runtime image has no Swift)")
    check("install-deps.sh" in joined and os.path.exists(os.path.join(DEPLOY, "scripts", "install-deps.sh")),
          f"{rel(DOCKERFILE)}: the build stage must run deploy/scripts/install-deps.sh (librdkafka >= 2.1)")
    check(re.search(r"librdkafka\*\.so\*", joined) is not None, f"{rel(DOCKERFILE)}: librdkafka is not copied to the runtime")
    runtime = joined[joined.rfind("\nFROM "):] if "\nFROM " in joined else joined
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    check(bool(users) and users[-1].split(":")[0] not in ("root", "0"), f"{rel(DOCKERFILE)}: runtime stage runs as root")
    check(re.search(r"^RUN ldconfig", runtime, re.M) is not None, f"{rel(DOCKERFILE)}: runtime stage does not run ldconfig")
    # One package list for both image builds: the Dockerfile's runtime-base stage and images.sh's
    # debootstrap read the same file, and the final stage stands on whichever base was built.
    names = {alias: image for image, alias in stages if alias}
    check(names.get("runtime-base", "").startswith("debian:bookworm"),
          f"{rel(DOCKERFILE)}: no runtime-base stage on debian:bookworm (images.sh's base is Debian 12 too)")
    base_stage = joined[joined.find("AS runtime-base"):]
    base_stage = base_stage[:base_stage.find("\nFROM ")]
    check("runtime-packages.txt" in base_stage and "apt-get install" in base_stage,
          f"{rel(DOCKERFILE)}: the runtime-base stage does not install deploy/docker/runtime-packages.txt")
    check(re.search(r"^ARG RUNTIME_BASE=runtime-base$", joined, re.M) is not None
          and re.search(r"^FROM \$\{RUNTIME_BASE\} AS runtime$", joined, re.M) is not None,
          f"{rel(DOCKERFILE)}: the final stage is not `FROM ${{RUNTIME_BASE}} AS runtime` (images.sh builds it on its base)")
    check(re.search(r"^ARG BINARIES=build$", joined, re.M) is not None and re.search(r"^FROM \$\{BINARIES\} AS binaries$", joined, re.M) is not None,
          f"{rel(DOCKERFILE)}: the binaries do not come from `FROM ${{BINARIES}} AS binaries` (images.sh stages its own)")
    check(re.search(r"^HEALTHCHECK\s.*healthcheck", runtime, re.M) is not None, f"{rel(DOCKERFILE)}: the image has no HEALTHCHECK")
    check(re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--"\]', runtime, re.M) is not None, f"{rel(DOCKERFILE)}: tini is not the ENTRYPOINT")
    if check(os.path.exists(PACKAGES_FILE), f"{rel(PACKAGES_FILE)}: missing"):
        listed = [line.split("#")[0].strip() for line in read(PACKAGES_FILE).splitlines()]
        listed = [name for name in listed if name]
        for package in RUNTIME_PACKAGES:
            check(package in listed, f"{rel(PACKAGES_FILE)}: does not list {package}")
        check(len(listed) == len(set(listed)), f"{rel(PACKAGES_FILE)}: lists a package twice")
    if check(os.path.exists(IMAGES_SCRIPT), f"{rel(IMAGES_SCRIPT)}: missing"):
        images = read(IMAGES_SCRIPT)
        check("deploy/docker/runtime-packages.txt" in images and "debootstrap" in images,
              f"{rel(IMAGES_SCRIPT)}: does not debootstrap the base from deploy/docker/runtime-packages.txt")
        check("--static-swift-stdlib" in images and "-f deploy/docker/Dockerfile" in images and "--target runtime" in images,
              f"{rel(IMAGES_SCRIPT)}: does not build deploy/docker/Dockerfile's runtime stage on static binaries")

dockerignore = os.path.join(ROOT, ".dockerignore")
if check(os.path.exists(dockerignore), ".dockerignore: missing at the repository root"):
    patterns = read(dockerignore).split()
    for pattern in (".build*", ".state", ".git"):
        check(pattern in patterns, f".dockerignore: does not exclude {pattern}")


# --- docker-compose.yml ----------------------------------------------------------------------

def command_binary(tokens):
    """The executable a container runs: its first token after an init wrapper (tini --)."""
    tokens = list(tokens or [])
    if tokens and os.path.basename(tokens[0]) == "tini":
        tokens = tokens[1:]
        if tokens and tokens[0] == "--":
            tokens = tokens[1:]
    return tokens[0] if tokens else None


def url_port(test):
    text = " ".join(test) if isinstance(test, list) else str(test)
    match = re.search(r"https?://[^/\s:]+:(\d+)/readyz", text)
    return int(match.group(1)) if match else None


def seconds(value):
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value))
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0) if match and value else 0


compose_documents = documents.get(COMPOSE)
if check(compose_documents is not None, f"{rel(COMPOSE)}: missing or unparsable") and compose_documents:
    compose = compose_documents[0]
    services = compose.get("services", {})
    where = rel(COMPOSE)
    for infra in ("kafka", "redis", "postgres"):
        check(infra in services and "healthcheck" in services[infra],
              f"{where}: {infra} is missing or has no healthcheck (the services wait for it to be healthy)")
    kafka_env = services.get("kafka", {}).get("environment", {})
    check(set(str(kafka_env.get("KAFKA_PROCESS_ROLES", "")).split(",")) == {"broker", "controller"},
          f"{where}: kafka is not a KRaft controller+broker")
    check("kafka:9092" in str(kafka_env.get("KAFKA_ADVERTISED_LISTENERS", "")),
          f"{where}: kafka does not advertise kafka:9092 to the compose network")
    check("--appendonly" in services.get("redis", {}).get("command", []), f"{where}: redis without appendonly")
    pg = services.get("postgres", {}).get("environment", {})
    check((pg.get("POSTGRES_USER"), pg.get("POSTGRES_PASSWORD"), pg.get("POSTGRES_DB")) == ("switchboard",) * 3,
          f"{where}: postgres user/password/db are not switchboard")

    images = set()
    for name in SERVICES:
        service = services.get(name)
        if not check(service is not None, f"{where}: service {name} is missing"):
            continue
        at = f"{where}: {name}"
        build = service.get("build")
        if check(isinstance(build, dict), f"{at}: no build section naming the Dockerfile"):
            context = os.path.normpath(os.path.join(os.path.dirname(COMPOSE), build.get("context", ".")))
            dockerfile_path = os.path.normpath(os.path.join(context, build.get("dockerfile", "Dockerfile")))
            check(dockerfile_path == os.path.normpath(DOCKERFILE),
                  f"{at}: builds {rel(dockerfile_path)}, not {rel(DOCKERFILE)}")
            check(context == ROOT, f"{at}: build context {rel(context)} is not the repository root")
        images.add(service.get("image"))
        command = service.get("command")
        binary = command_binary(command.split() if isinstance(command, str) else command)
        check(binary in PRODUCTS, f"{at}: command {command!r} names no product executable ({', '.join(PRODUCTS)})")
        check(binary == name, f"{at}: runs {binary!r}, expected {name!r}")

        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
        check_environment(at, name, environment)
        port = int(environment.get("SWITCHBOARD_HTTP_PORT", PORTS[name]))
        check(port == PORTS[name], f"{at}: SWITCHBOARD_HTTP_PORT {port}, documented default is {PORTS[name]}")
        check(str(environment.get("SWITCHBOARD_KAFKA_BROKERS", "")).split(",")[0] == "kafka:9092",
              f"{at}: SWITCHBOARD_KAFKA_BROKERS does not point at kafka:9092")
        check(str(environment.get("SWITCHBOARD_REDIS_URL", "")).startswith("redis://redis:"),
              f"{at}: SWITCHBOARD_REDIS_URL does not point at the redis service")
        check(str(environment.get("SWITCHBOARD_POSTGRES_URL", "")).startswith(
                  "postgres://switchboard:switchboard@postgres:5432/switchboard"),
              f"{at}: SWITCHBOARD_POSTGRES_URL does not match the postgres service's credentials")

        admin = int(environment.get("SWITCHBOARD_ADMIN_PORT", ADMIN_PORTS[name]))
        check(admin == ADMIN_PORTS[name], f"{at}: SWITCHBOARD_ADMIN_PORT {admin}, documented default is {ADMIN_PORTS[name]}")
        check(environment.get("SWITCHBOARD_ADMIN_HOST") == "0.0.0.0",
              f"{at}: SWITCHBOARD_ADMIN_HOST must be 0.0.0.0 in a container (the default 127.0.0.1 is the container's own)")
        secret = str(environment.get("SWITCHBOARD_JWT_SECRET", ""))
        default = re.fullmatch(r"\$\{SWITCHBOARD_JWT_SECRET(?::?-([^}]*))?(?::?\?[^}]*)?\}", secret)
        check(default is not None and secret.startswith("${SWITCHBOARD_JWT_SECRET:?"),
              f"{at}: SWITCHBOARD_JWT_SECRET must be required from the environment (${{SWITCHBOARD_JWT_SECRET:?...}}), not defaulted")
        check(secret not in PUBLISHED_SECRETS, f"{at}: SWITCHBOARD_JWT_SECRET is a published secret")
        test = service.get("healthcheck", {}).get("test")
        check(test is not None and "/readyz" in str(test), f"{at}: healthcheck does not probe /readyz")
        check(url_port(test) == admin, f"{at}: healthcheck probes port {url_port(test)}, the admin port is {admin}")
        check(seconds(service.get("stop_grace_period")) >= 45, f"{at}: stop_grace_period under 45 s")
        depends = service.get("depends_on", {})
        for infra in ("kafka", "redis", "postgres"):
            check(isinstance(depends, dict) and depends.get(infra, {}).get("condition") == "service_healthy",
                  f"{at}: does not wait for {infra} to be healthy")
        check(service.get("read_only") is True and "/tmp" in (service.get("tmpfs") or []),
              f"{at}: not read_only with a tmpfs on /tmp (as Kubernetes' readOnlyRootFilesystem)")
        replicas = service.get("deploy", {}).get("replicas", 1)
        if name in WORKERS:
            check(replicas == 2, f"{at}: deploy.replicas is {replicas}, expected 2")
            check(replicas <= PARTITIONS, f"{at}: {replicas} replicas exceed the {PARTITIONS} partitions")
    check(len(images) == 1 and None not in images, f"{where}: services use several images {images}; one shared image expected")
    COMPOSE_IMAGE = next(iter(images)) if len(images) == 1 else None
    gateway = services.get("gateway", {})
    check(any(str(p).split(":")[-1] == "8080" and str(p).count(":") >= 1 for p in gateway.get("ports", [])),
          f"{where}: gateway does not publish 8080")
    check(gateway.get("deploy", {}).get("replicas", 1) == 1, f"{where}: gateway publishes a host port, so it can have one replica only")


# --- Kubernetes ------------------------------------------------------------------------------

def quantity(value):
    """CPU in cores or memory in bytes from a Kubernetes quantity."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * factor
    return float(text)


if check(os.path.isdir(K8S), "deploy/k8s: missing"):
    kustomization_path = os.path.join(K8S, "kustomization.yaml")
    kustomization = (documents.get(kustomization_path) or [{}])[0]
    listed = kustomization.get("resources", [])
    present = sorted(f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
    check(sorted(listed) == present, f"deploy/k8s/kustomization.yaml: resources {sorted(listed)} != files {present}")
    check(any(i.get("name") == "switchboard" for i in kustomization.get("images", [])),
          "deploy/k8s/kustomization.yaml: no images entry for the switchboard image")

    objects = {}
    for name in present:
        for document in documents.get(os.path.join(K8S, name), []):
            key = (document.get("kind"), document.get("metadata", {}).get("name"))
            check(key not in objects, f"deploy/k8s/{name}: {key[0]} {key[1]} defined twice")
            objects[key] = (name, document)

    check(("Namespace", "switchboard") in objects, "deploy/k8s: no Namespace switchboard")
    config = objects.get(("ConfigMap", "switchboard-config"), (None, {}))[1].get("data", {})
    secret_document = objects.get(("Secret", "switchboard-secrets"), (None, {}))[1]
    secret = {**secret_document.get("data", {}), **secret_document.get("stringData", {})}
    check(bool(config), "deploy/k8s: ConfigMap switchboard-config missing or empty")
    check("SWITCHBOARD_JWT_SECRET" in secret, "deploy/k8s: Secret switchboard-secrets has no SWITCHBOARD_JWT_SECRET")
    check("SWITCHBOARD_JWT_SECRET" not in config, "deploy/k8s: the JWT secret belongs in the Secret, not the ConfigMap")
    check("SWITCHBOARD_DEVELOPMENT_MODE" not in config and "SWITCHBOARD_DEVELOPMENT_MODE" not in secret,
          "deploy/k8s: development mode accepts published secrets; never in a deployment")
    check_environment("deploy/k8s/configmap.yaml", None, config)
    check_environment("deploy/k8s/secret.yaml", None, secret)
    sources = {("configMapRef", "switchboard-config"): config, ("secretRef", "switchboard-secrets"): secret}

    for name in SERVICES:
        found = objects.get(("Deployment", name))
        if not check(found is not None, f"deploy/k8s: no Deployment {name}"):
            continue
        file, deployment = found
        at = f"deploy/k8s/{file}: Deployment {name}"
        spec = deployment.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        check(bool(selector) and all(labels.get(k) == v for k, v in selector.items()),
              f"{at}: selector {selector} does not match the pod labels {labels}")
        check("replicas" not in spec, f"{at}: has spec.replicas, which fights its HorizontalPodAutoscaler")
        check(pod.get("terminationGracePeriodSeconds") == GRACE_SECONDS,
              f"{at}: terminationGracePeriodSeconds is {pod.get('terminationGracePeriodSeconds')}, expected {GRACE_SECONDS}")
        check(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{at}: runAsNonRoot is not set")
        containers = pod.get("containers", [])
        if not check(len(containers) == 1, f"{at}: expected one container, found {len(containers)}"):
            continue
        container = containers[0]
        check(str(container.get("image", "")).split(":")[0] == "switchboard",
              f"{at}: image {container.get('image')} is not the switchboard image kustomize rewrites")
        check(container.get("image") == globals().get("COMPOSE_IMAGE"),
              f"{at}: image {container.get('image')} is not the compose file's {globals().get('COMPOSE_IMAGE')}")
        check(pod.get("automountServiceAccountToken") is False,
              f"{at}: automountServiceAccountToken is not false (the services never call the Kubernetes API)")
        check(container.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
              f"{at}: readOnlyRootFilesystem is not true")
        found = objects.get(("PodDisruptionBudget", name))
        if check(found is not None, f"deploy/k8s: no PodDisruptionBudget {name}"):
            pdb = found[1].get("spec", {})
            check(found[1].get("apiVersion") == "policy/v1", f"deploy/k8s/{found[0]}: PodDisruptionBudget {name} is not policy/v1")
            pdb_selector = pdb.get("selector", {}).get("matchLabels", {})
            check(bool(pdb_selector) and all(labels.get(k) == v for k, v in pdb_selector.items()),
                  f"deploy/k8s/{found[0]}: PodDisruptionBudget {name} does not select the Deployment's pods")
            # minAvailable 1 would block every drain of a kind running one replica.
            check(pdb.get("maxUnavailable") == 1, f"deploy/k8s/{found[0]}: PodDisruptionBudget {name}: maxUnavailable is not 1")
        if name == "workflow-runner":
            found = objects.get(("NetworkPolicy", "workflow-runner-egress"))
            if check(found is not None, "deploy/k8s: no NetworkPolicy workflow-runner-egress (http nodes' egress)"):
                policy = found[1].get("spec", {})
                policy_selector = policy.get("podSelector", {}).get("matchLabels", {})
                check(bool(policy_selector) and all(labels.get(k) == v for k, v in policy_selector.items()),
                      f"deploy/k8s/{found[0]}: the NetworkPolicy does not select workflow-runner's pods")
                check("Egress" in policy.get("policyTypes", []), f"deploy/k8s/{found[0]}: the NetworkPolicy does not restrict egress")
                blocks = [peer["ipBlock"] for rule in policy.get("egress", []) for peer in rule.get("to", []) if "ipBlock" in peer]
                excepted = {cidr for block in blocks for cidr in block.get("except", [])}
                for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10", "fc00::/7"):
                    check(all(block.get("cidr") not in ("0.0.0.0/0", "::/0") for block in blocks) or private in excepted,
                          f"deploy/k8s/{found[0]}: the NetworkPolicy lets http nodes reach {private}, which the runner refuses")
        binary = command_binary((container.get("command") or []) + (container.get("args") or []))
        check(binary in PRODUCTS, f"{at}: command/args name no product executable ({', '.join(PRODUCTS)})")
        check(binary == name, f"{at}: runs {binary!r}, expected {name!r}")

        environment = {}
        for source in container.get("envFrom", []):
            for kind in ("configMapRef", "secretRef"):
                if kind in source:
                    key = (kind, source[kind].get("name"))
                    if check(key in sources, f"{at}: envFrom {kind} {key[1]} is not defined in deploy/k8s"):
                        environment.update(sources[key])
        explicit = {e.get("name"): e.get("value") for e in container.get("env", [])}
        check_environment(at, name, explicit)
        environment.update(explicit)
        port = int(environment.get("SWITCHBOARD_HTTP_PORT", PORTS[name]))
        check(port == PORTS[name], f"{at}: SWITCHBOARD_HTTP_PORT {port}, documented default is {PORTS[name]}")
        for variable in ("SWITCHBOARD_KAFKA_BROKERS", "SWITCHBOARD_REDIS_URL", "SWITCHBOARD_POSTGRES_URL",
                         "SWITCHBOARD_JWT_SECRET"):
            check(variable in environment, f"{at}: {variable} is not set (the default points at localhost)")

        admin = int(environment.get("SWITCHBOARD_ADMIN_PORT", ADMIN_PORTS[name]))
        check(admin == ADMIN_PORTS[name], f"{at}: SWITCHBOARD_ADMIN_PORT {admin}, documented default is {ADMIN_PORTS[name]}")
        check(environment.get("SWITCHBOARD_ADMIN_HOST") == "0.0.0.0",
              f"{at}: SWITCHBOARD_ADMIN_HOST must be 0.0.0.0 (the kubelet probes the pod's address)")
        named_ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
        check(port in named_ports.values(), f"{at}: no containerPort {port}")
        check(admin in named_ports.values(), f"{at}: no containerPort {admin} (admin)")

        def probe_port(probe_name, path, expected):
            probe = container.get(probe_name)
            if not check(probe is not None and "httpGet" in probe, f"{at}: no {probe_name} with httpGet"):
                return
            get = probe["httpGet"]
            check(get.get("path") == path, f"{at}: {probe_name} probes {get.get('path')}, expected {path}")
            target = named_ports.get(get.get("port"), get.get("port"))
            check(target == expected, f"{at}: {probe_name} probes port {get.get('port')} ({target}), expected {expected}")

        # /readyz is served on the admin port only; /healthz on both.
        probe_port("readinessProbe", "/readyz", admin)
        probe_port("livenessProbe", "/healthz", port)
        if "startupProbe" in container:
            probe_port("startupProbe", "/healthz", port)

        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        slept = pre_stop.get("sleep", {}).get("seconds")
        command = pre_stop.get("exec", {}).get("command", [])
        if slept is None and len(command) >= 2 and os.path.basename(command[0]) == "sleep":
            slept = int(command[1])
        check(slept is not None and slept >= 5, f"{at}: no preStop sleep of 5 s for endpoints to drain")
        check(slept is None or slept + 45 <= GRACE_SECONDS,
              f"{at}: preStop sleep {slept} s + 45 s of drain exceed the {GRACE_SECONDS} s grace period")

        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            if check(request is not None and limit is not None, f"{at}: {resource} request and limit must both be set"):
                check(quantity(request) <= quantity(limit), f"{at}: {resource} request {request} exceeds its limit {limit}")
        cpu_limit = resources.get("limits", {}).get("cpu")
        check(cpu_limit is None or quantity(cpu_limit) <= 2, f"{at}: CPU limit {cpu_limit} exceeds a 2-core node")

        annotations = spec.get("template", {}).get("metadata", {}).get("annotations", {})
        if "prometheus.io/port" in annotations:
            check(str(annotations["prometheus.io/port"]) == str(admin), f"{at}: prometheus.io/port is not the admin port {admin}")

        found = objects.get(("Service", name))
        if check(found is not None, f"deploy/k8s: no Service {name}"):
            service = found[1]["spec"]
            check(all(labels.get(k) == v for k, v in service.get("selector", {}).items()) and service.get("selector"),
                  f"deploy/k8s/{found[0]}: Service {name} does not select the Deployment's pods")
            targets = [named_ports.get(p.get("targetPort"), p.get("targetPort") or p.get("port")) for p in service.get("ports", [])]
            check(port in targets, f"deploy/k8s/{found[0]}: Service {name} does not target port {port}")

        found = objects.get(("HorizontalPodAutoscaler", name))
        if check(found is not None, f"deploy/k8s: no HorizontalPodAutoscaler {name}"):
            hpa_file, hpa = found
            hpa_at = f"deploy/k8s/{hpa_file}: HorizontalPodAutoscaler {name}"
            check(hpa.get("apiVersion") == "autoscaling/v2", f"{hpa_at}: apiVersion is not autoscaling/v2")
            hpa_spec = hpa.get("spec", {})
            target = hpa_spec.get("scaleTargetRef", {})
            check((target.get("kind"), target.get("name")) == ("Deployment", name), f"{hpa_at}: does not scale Deployment {name}")
            check(hpa_spec.get("minReplicas") in (1, 2), f"{hpa_at}: minReplicas {hpa_spec.get('minReplicas')} not 1 or 2")
            check(hpa_spec.get("maxReplicas") == PARTITIONS,
                  f"{hpa_at}: maxReplicas {hpa_spec.get('maxReplicas')}, expected {PARTITIONS} (the partitions per topic)")
            cpu = [m for m in hpa_spec.get("metrics", []) if m.get("resource", {}).get("name") == "cpu"]
            check(len(cpu) == 1 and cpu[0]["resource"].get("target", {}).get("averageUtilization") == 70,
                  f"{hpa_at}: no CPU target of 70 % utilization")

    extra = sorted(n for kind, n in objects if kind == "Deployment" and n not in SERVICES)
    check(not extra, f"deploy/k8s: Deployments {extra} are not Switchboard services")

for warning in warnings:
    print(f"validate: warning: {warning}")
for failure in failures:
    print(f"validate: FAIL {failure}")
print(f"validate: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY

# The Swift sources follow .swift-format (swift-format ships with the toolchain): `make format` applies it.
if (cd "$root" && swift format lint --strict --recursive --configuration .swift-format Package.swift Services Shared Tests); then
  echo "validate: swift format lint ok"
else
  echo "validate: FAIL the Swift sources are not formatted: run make format"
  status=1
fi

# Linters, when installed (shellcheck is a Debian package; hadolint is not, so it is usually skipped).
if command -v shellcheck >/dev/null 2>&1; then
  if shellcheck "$root/deploy/validate.sh"; then echo "validate: shellcheck deploy/validate.sh ok"; else status=1; fi
else
  echo "validate: shellcheck not installed, skipped"
fi
if command -v hadolint >/dev/null 2>&1; then
  if hadolint "$root/deploy/docker/Dockerfile"; then echo "validate: hadolint ok"; else status=1; fi
else
  echo "validate: hadolint not installed, skipped"
fi

exit "$status"
