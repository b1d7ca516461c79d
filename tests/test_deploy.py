"""The deployment files (``Dockerfile``, ``deploy/``) agree with the package they deploy.

Docker and kubectl are not available where the tests run, so most checks read the files: the
manifests parse, name only configuration keys and commands that exist, give every process the
environment and the volumes its configuration needs, and connect the CSC and the workers to the
scheduler Service the Dask operator makes. The plain recipe's scheduler and worker scripts are
also started for real, on loopback, and the package is built from what the Dockerfile copies, as
the image builds it.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import dask.config
import pytest
import yaml
from lsst.ts.idl.enums.OCPS import SalIndex

from lsst.ts.rapidanalysis.csc import CONFIG_SCHEMA
from lsst.ts.rapidanalysis.dispatch.scheduler_setup import DEMAND_KEY
from lsst.ts.rapidanalysis.sal.config_validator import DefaultingValidator

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
PLAIN = DEPLOY / "plain"
PRELOAD = "lsst.ts.rapidanalysis.dispatch.worker_setup"
SCHEDULER_PRELOAD = "lsst.ts.rapidanalysis.dispatch.scheduler_setup"
CONFIG_SUBDIR = "RapidAnalysis/v1"
DASK_API = "kubernetes.dask.org/v1"
# The operator names the scheduler's Service after the cluster and injects this into workers.
OPERATOR_WORKER_NAME = "$(DASK_WORKER_NAME)"
_VAR_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_SECRET_NAME_RE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY|PRIVATE", re.IGNORECASE)

Obj = dict[str, Any]


# -- reading the files --


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> list[Obj]:
    return [doc for path in sorted(K8S.glob("*.y*ml")) for doc in load_documents(path)]


def objects(kind: str) -> list[Obj]:
    return [obj for obj in k8s_objects() if obj.get("kind") == kind]


def by_name(kind: str) -> dict[str, Obj]:
    return {obj["metadata"]["name"]: obj for obj in objects(kind)}


def pod_specs() -> Iterator[tuple[str, Obj]]:
    """Every pod template of the manifests, labelled ``Kind/name[/role]``."""
    for obj in k8s_objects():
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{kind}/{name}", obj["spec"]["template"]["spec"]
        elif kind == "DaskCluster":
            yield f"{kind}/{name}/scheduler", obj["spec"]["scheduler"]["spec"]
            yield f"{kind}/{name}/worker", obj["spec"]["worker"]["spec"]


def argv(container: Obj) -> list[str]:
    """The container's command line: the image has no ENTRYPOINT, so args alone replace its CMD."""
    return [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]


def env_of(container: Obj) -> dict[str, str | None]:
    """Environment names -> literal values (None for values from Secrets or fields)."""
    assert not container.get("envFrom"), f"{container['name']}: envFrom cannot be checked here; use env"
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def csc_pods() -> list[tuple[str, Obj, Obj]]:
    """(label, pod spec, container) of every container that runs the CSC."""
    found = [
        (label, spec, c)
        for label, spec in pod_specs()
        for c in spec["containers"]
        if argv(c)[:1] == ["run_rapid_analysis"]
    ]
    assert found, "no container runs run_rapid_analysis"
    return found


def dask_clusters() -> list[Obj]:
    clusters = objects("DaskCluster")
    assert clusters, "deploy/kubernetes has no DaskCluster"
    return clusters


def one_container(spec: Obj, label: str) -> Obj:
    assert len(spec["containers"]) == 1, f"{label}: expected one container"
    return spec["containers"][0]


def options(args: list[str]) -> dict[str, str]:
    """``--name value`` pairs of a command line (flags without a value map to "")."""
    result: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if eq:
                result[name] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                result[name] = args[i + 1]
            else:
                result[name] = ""
    return result


def scheduler_addresses(cluster: Obj) -> set[str]:
    """The addresses at which the operator's Service reaches this cluster's scheduler."""
    name = cluster["metadata"]["name"]
    service = cluster["spec"]["scheduler"]["service"]
    assert service.get("selector") == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}, (
        f"DaskCluster/{name}: the scheduler Service must select the operator's scheduler pod labels"
    )
    namespace = cluster["metadata"].get("namespace")
    hosts = {f"{name}-scheduler"}
    if namespace:
        hosts |= {f"{name}-scheduler.{namespace}", f"{name}-scheduler.{namespace}.svc.cluster.local"}
    ports = {p["port"] for p in service["ports"] if p.get("name") == "tcp-comm"}
    assert ports, f"DaskCluster/{name}: its scheduler Service has no tcp-comm port"
    return {f"tcp://{host}:{port}" for host in hosts for port in ports}


def quantity(text: str | int | float) -> float:
    """A Kubernetes or Dask quantity (2, 500m, 4Gi, 4GiB, 3G) as a number (bytes or cores)."""
    units = {"m": 1e-3, "": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    units |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)\s*([kKMGT]i?|m)?B?", str(text))
    assert match, f"not a quantity: {text!r}"
    return float(match[1]) * units[match[2] or ""]


# -- the CSC configurations the manifests hold --


def config_maps_of(spec: Obj, container: Obj) -> dict[str, dict[str, str]]:
    """ConfigMaps mounted by a CSC container at its configuration directory: mount path -> data."""
    config_maps = by_name("ConfigMap")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    result = {}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("configMap")
        if source and mount["mountPath"].rstrip("/").endswith("/" + CONFIG_SUBDIR):
            assert source["name"] in config_maps, f"ConfigMap {source['name']} is not in deploy/kubernetes"
            result[mount["mountPath"].rstrip("/")] = config_maps[source["name"]]["data"]
    return result


def merged_config(files: dict[str, str], site: str) -> dict[str, Any]:
    """What the CSC reads: _init.yaml, then _<site>.yaml over it (mappings merged key by key)."""

    def merge(base: dict, update: dict) -> dict:
        out = dict(base)
        for key, value in update.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    assert "_init.yaml" in files, "the CSC refuses to start without _init.yaml in its configuration directory"
    config = yaml.safe_load(files["_init.yaml"]) or {}
    return merge(config, yaml.safe_load(files.get(f"_{site}.yaml", "")) or {})


def csc_setups() -> list[tuple[str, Obj, Obj, dict[str, Any]]]:
    """(label, pod spec, container, merged configuration) of every CSC in the manifests."""
    setups = []
    for label, spec, container in csc_pods():
        env = env_of(container)
        maps = config_maps_of(spec, container)
        assert len(maps) == 1, f"{label}: expected one configuration ConfigMap mounted at .../{CONFIG_SUBDIR}"
        setups.append((label, spec, container, merged_config(next(iter(maps.values())), env.get("LSST_SITE") or "")))
    return setups


def variables(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_VAR_RE.findall(value))
    if isinstance(value, dict):
        return set().union(*(variables(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value))
    return set()


def expand(text: str, env: dict[str, str | None]) -> str:
    def value(match: re.Match) -> str:
        found = env.get(match[1])
        assert found is not None, f"${match[1]} has no literal value in the container's env"
        return found

    return _VAR_RE.sub(value, text)


def plain_configs() -> dict[str, str]:
    directory = PLAIN / "config" / CONFIG_SUBDIR
    return {p.name: p.read_text() for p in sorted(directory.glob("*.yaml"))}


# -- every YAML file, every object --


def test_deploy_has_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in yaml_files()}
    assert {"kubernetes/daskcluster.yaml", "kubernetes/csc.yaml"} <= names


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    # An empty configuration file (comments only) is allowed: the schema's defaults hold.
    assert all(doc is None or isinstance(doc, dict) for doc in docs), f"{path}: every document must be a mapping"


def test_kubernetes_objects_are_named() -> None:
    objs = k8s_objects()
    assert objs
    seen = set()
    for obj in objs:
        assert isinstance(obj.get("apiVersion"), str) and obj["apiVersion"], obj
        assert isinstance(obj.get("kind"), str) and obj["kind"], obj
        name = (obj.get("metadata") or {}).get("name")
        assert isinstance(name, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), obj
        key = (obj["kind"], name)
        assert key not in seen, f"{key} is defined twice"
        seen.add(key)
        if obj["kind"] in ("DaskCluster", "DaskAutoscaler", "DaskWorkerGroup", "DaskJob"):
            assert obj["apiVersion"] == DASK_API, f"{key}: the operator serves {DASK_API}"


# -- the Dask cluster --


def test_dask_cluster_has_what_the_operator_requires() -> None:
    for cluster in dask_clusters():
        name = cluster["metadata"]["name"]
        spec = cluster["spec"]
        # Required by the DaskCluster CRD: scheduler.spec, scheduler.service and worker.spec.
        assert spec["scheduler"]["spec"]["containers"], name
        assert spec["scheduler"]["service"]["ports"], name
        assert spec["worker"]["spec"]["containers"], name
        assert isinstance(spec["worker"].get("replicas", 1), int), name
        # Workers exit when their scheduler goes away; only a restarted container rejoins.
        for role in ("scheduler", "worker"):
            assert spec[role]["spec"].get("restartPolicy") == "Always", f"DaskCluster/{name} {role}"
        for role in ("scheduler", "worker"):
            for c in spec[role]["spec"]["containers"]:
                for bound in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c.get("resources", {}).get(bound, {})), (
                        f"DaskCluster/{name} {role}: resources.{bound} needs cpu and memory"
                    )


def test_scheduler_command_and_ports() -> None:
    for cluster in dask_clusters():
        name = cluster["metadata"]["name"]
        container = one_container(cluster["spec"]["scheduler"]["spec"], f"{name}/scheduler")
        args = argv(container)
        assert args[:2] == ["dask", "scheduler"], args
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert int(options(args).get("--port", 8786)) == ports["tcp-comm"]
        assert options(args).get("--dashboard-address", ":8787").rpartition(":")[2] == str(ports["http-dashboard"])
        # The Service forwards to ports the container declares.
        for port in cluster["spec"]["scheduler"]["service"]["ports"]:
            assert port["targetPort"] in ports or int(port["targetPort"]) in ports.values(), port


def allowed_failures(env: dict[str, str]) -> Any:
    """The scheduler's ``distributed.scheduler.allowed-failures`` as Dask reads it from ``env``."""
    return dask.config.get("distributed.scheduler.allowed-failures", config=dask.config.collect_env(env), default=None)


def test_scheduler_allows_one_failure_as_job_reruns() -> None:
    """A job whose worker dies is run once more elsewhere, then reported: the scheduler agrees with the CSC."""
    validator = DefaultingValidator(CONFIG_SCHEMA)
    for cluster in dask_clusters():
        container = one_container(cluster["spec"]["scheduler"]["spec"], "scheduler")
        setting = allowed_failures({k: v for k, v in env_of(container).items() if v is not None})
        assert setting == 1
        for label, _, csc, config in csc_setups():
            if expand(config["scheduler_address"], env_of(csc)) in scheduler_addresses(cluster):
                assert validator.validate(config)["job_reruns"] == setting, f"{label}: job_reruns != allowed-failures"
    script = (PLAIN / "scheduler.sh").read_text()
    setting = allowed_failures(dict(re.findall(r"^export (DASK_[A-Z_]+)=(\S+)$", script, re.MULTILINE)))
    assert setting == 1
    files = plain_configs()
    for name in files:
        if name.startswith("_") and name != "_init.yaml":
            assert validator.validate(merged_config(files, name[1:-5]))["job_reruns"] == setting, name


def test_worker_command() -> None:
    for cluster in dask_clusters():
        name = cluster["metadata"]["name"]
        container = one_container(cluster["spec"]["worker"]["spec"], f"{name}/worker")
        args = argv(container)
        assert args[:2] == ["dask", "worker"], args
        opts = options(args)
        assert opts.get("--preload") == PRELOAD
        assert args[2] in scheduler_addresses(cluster), (
            f"{name}: workers connect to {args[2]}, not the Service {sorted(scheduler_addresses(cluster))}"
        )
        # The operator scales down by retiring workers by name and deleting the pods so named.
        assert opts.get("--name") == OPERATOR_WORKER_NAME
        limits = container["resources"]["limits"]
        assert int(opts["--nthreads"]) <= quantity(limits["cpu"]), "more threads than the cpu limit"
        assert quantity(opts["--memory-limit"]) <= quantity(limits["memory"]), "Dask's memory limit over the pod's"


def test_the_scheduler_preloads_the_demand_hook() -> None:
    """Both recipes' schedulers make adaptive_target count the CSCs' demand (issue 14, autoscaling)."""
    for cluster in dask_clusters():
        container = one_container(cluster["spec"]["scheduler"]["spec"], "scheduler")
        assert options(argv(container)).get("--preload") == SCHEDULER_PRELOAD
    assert f"--preload {SCHEDULER_PRELOAD}\n" in (PLAIN / "scheduler.sh").read_text() + "\n"
    assert callable(importlib.import_module(SCHEDULER_PRELOAD).dask_setup)


def test_preload_module_imports() -> None:
    module = importlib.import_module(PRELOAD)
    assert callable(module.dask_setup) and "lsst.ts.rapidanalysis.dispatch.worker_task" in sys.modules


def test_autoscaler_range() -> None:
    clusters = {c["metadata"]["name"]: c for c in dask_clusters()}
    autoscalers = objects("DaskAutoscaler")
    assert autoscalers, "no DaskAutoscaler"
    for autoscaler in autoscalers:
        spec = autoscaler["spec"]
        assert spec["cluster"] in clusters, f"DaskAutoscaler names unknown cluster {spec['cluster']}"
        assert isinstance(spec["minimum"], int) and isinstance(spec["maximum"], int)
        assert 0 <= spec["minimum"] <= spec["maximum"]
        replicas = clusters[spec["cluster"]]["spec"]["worker"].get("replicas", 1)
        assert spec["minimum"] <= replicas <= spec["maximum"]


# -- volumes --


def test_volumes_are_declared_and_exist() -> None:
    claims = by_name("PersistentVolumeClaim")
    config_maps = by_name("ConfigMap")
    for label, spec in pod_specs():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounted = set()
        for c in spec["containers"]:
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{label}: volumeMount {mount['name']} has no volume"
                assert PurePosixPath(mount["mountPath"]).is_absolute(), mount
                mounted.add(mount["name"])
        assert set(volumes) == mounted, f"{label}: volumes never mounted: {set(volumes) - mounted}"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, volume
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, volume
    pvs = by_name("PersistentVolume")
    for name, claim in claims.items():
        if "volumeName" in claim["spec"]:
            pv = pvs.get(claim["spec"]["volumeName"])
            assert pv is not None, f"PVC {name} binds to a PersistentVolume that is not defined"
            assert set(claim["spec"]["accessModes"]) <= set(pv["spec"]["accessModes"]), name


def test_scheduler_mounts_no_data() -> None:
    for cluster in dask_clusters():
        spec = cluster["spec"]["scheduler"]["spec"]
        assert not spec.get("volumes") and not one_container(spec, "scheduler").get("volumeMounts")


def mount_for(path: str, spec: Obj, container: Obj) -> tuple[str, bool, PurePosixPath]:
    """(claim, read-only, path inside the volume) of the mount that holds ``path``."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    best = None
    for mount in container.get("volumeMounts", []):
        root = PurePosixPath(mount["mountPath"])
        if PurePosixPath(path).is_relative_to(root) and (best is None or len(root.parts) > len(best[0].parts)):
            best = (root, mount)
    assert best is not None, f"{container['name']}: nothing mounted holds {path}"
    root, mount = best
    source = volumes[mount["name"]].get("persistentVolumeClaim")
    assert source, f"{container['name']}: {path} is not on a shared volume (mount {mount['name']})"
    read_only = bool(mount.get("readOnly")) or bool(source.get("readOnly"))
    return source["claimName"], read_only, PurePosixPath(path).relative_to(root)


def map_to_worker(path: str, path_map: list[dict[str, str]]) -> str:
    """As the schema says: the first {csc, worker} prefix (listed longest first) that holds ``path``."""
    for entry in path_map:
        if PurePosixPath(path).is_relative_to(entry["csc"]):
            return str(PurePosixPath(entry["worker"]) / PurePosixPath(path).relative_to(entry["csc"]))
    return path


def test_workers_see_the_cscs_paths() -> None:
    """The CSC's raw root and output root are on shared volumes the workers mount, at the path_map's paths."""
    clusters = dask_clusters()
    for label, spec, container, config in csc_setups():
        env = env_of(container)
        address = expand(config["scheduler_address"], env)
        matching = [c for c in clusters if address in scheduler_addresses(c)]
        assert len(matching) == 1, f"{label}: scheduler_address {address!r} is no DaskCluster's scheduler Service"
        worker_spec = matching[0]["spec"]["worker"]["spec"]
        worker = one_container(worker_spec, "worker")
        instrument = SalIndex(int(argv(container)[1])).name
        path_map = config.get("path_map", [])
        raw = expand(config["data_roots"][instrument], env)
        output = expand(config["output_root"], env)
        for path, writable in ((raw, False), (output, True)):
            claim, csc_read_only, inside = mount_for(path, spec, container)
            w_claim, w_read_only, w_inside = mount_for(map_to_worker(path, path_map), worker_spec, worker)
            assert (w_claim, w_inside) == (claim, inside), (
                f"{label}: {path} is {claim}:/{inside} for the CSC but {w_claim}:/{w_inside} for the workers"
            )
            if writable:
                assert not csc_read_only and not w_read_only, f"{path} must be writable by the CSC and the workers"
            else:
                assert csc_read_only and w_read_only, f"raws ({path}) are read-only for Rapid Analysis"


def test_min_workers_within_autoscaler_floor() -> None:
    """Autoscaling down to its minimum must not fault the CSC (min_workers)."""
    floors = {a["spec"]["cluster"]: a["spec"]["minimum"] for a in objects("DaskAutoscaler")}
    for label, _, container, config in csc_setups():
        address = expand(config["scheduler_address"], env_of(container))
        filled = DefaultingValidator(CONFIG_SCHEMA).validate(config)
        for cluster in dask_clusters():
            if address in scheduler_addresses(cluster):
                floor = floors.get(cluster["metadata"]["name"], cluster["spec"]["worker"].get("replicas", 1))
                assert filled["min_workers"] <= floor, f"{label}: min_workers {filled['min_workers']} > {floor}"


# -- the CSC: configuration and environment --


def test_csc_configurations_are_valid() -> None:
    """Every file of a configuration ConfigMap, and what the CSC merges from them, follows the schema."""
    validator = DefaultingValidator(CONFIG_SCHEMA)
    for label, spec, container in csc_pods():
        for mount_path, files in config_maps_of(spec, container).items():
            assert files, f"{label}: {mount_path} is empty"
            for name, text in files.items():
                assert name.endswith(".yaml"), f"{label}: {name} is not a configuration file"
                validator.validate(yaml.safe_load(text) or {})
    for *_, config in csc_setups():
        validator.validate(config)


def test_plain_configurations_are_valid() -> None:
    validator = DefaultingValidator(CONFIG_SCHEMA)
    files = plain_configs()
    assert "_init.yaml" in files
    for name in files:
        if name.startswith("_") and name != "_init.yaml":
            config = validator.validate(merged_config(files, name[1:-5]))
            # Workers must see every root the CSC uses, through the path map when there is one.
            prefixes = [entry["csc"] for entry in config["path_map"]]
            if prefixes:
                for path in [*config["data_roots"].values(), config["output_root"]]:
                    assert any(PurePosixPath(path).is_relative_to(p) for p in prefixes), f"{name}: {path} unmapped"
                lengths = [len(p) for p in prefixes]
                assert lengths == sorted(lengths, reverse=True), f"{name}: path_map must list longest first"


def test_csc_environment() -> None:
    """The CSC container sets what it needs and every $VARIABLE its configuration uses."""
    for label, spec, container in csc_pods():
        env = env_of(container)
        for name in ("LSST_SITE", "LSST_DDS_PARTITION_PREFIX", "TS_CONFIG_OCS_DIR"):
            assert env.get(name), f"{label}: {name} is not set"
        maps = config_maps_of(spec, container)
        assert list(maps) == [f"{env['TS_CONFIG_OCS_DIR'].rstrip('/')}/{CONFIG_SUBDIR}"], (
            f"{label}: the configuration is not mounted at $TS_CONFIG_OCS_DIR/{CONFIG_SUBDIR}"
        )
        files = next(iter(maps.values()))
        assert f"_{env['LSST_SITE']}.yaml" in files, f"{label}: no site file for LSST_SITE={env['LSST_SITE']}"
        used = set().union(*(variables(yaml.safe_load(text)) for text in files.values()))
        assert not used - set(env), f"{label}: configuration uses unset {sorted(used - set(env))}"
        if env.get("CYCLONEDDS_URI"):
            uri = env["CYCLONEDDS_URI"].removeprefix("file://")
            mount_for_file = [m for m in container["volumeMounts"] if uri.startswith(m["mountPath"].rstrip("/") + "/")]
            assert mount_for_file, f"{label}: CYCLONEDDS_URI {uri} is not in a mounted volume"


def test_secrets_are_referenced_not_written() -> None:
    """Values that hold passwords come from Secrets the site creates; the doc names each one."""
    assert not objects("Secret"), "deploy/ must not hold a Secret"
    doc = (ROOT / "doc" / "deployment.rst").read_text()
    for label, _, container in csc_pods():
        for entry in container.get("env", []):
            if entry["name"] == "RAPID_ANALYSIS_DATABASE_URL":
                assert "secretKeyRef" in entry.get("valueFrom", {}), f"{label}: the database URL holds a password"
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in doc, f"doc/deployment.rst does not say to create Secret {ref['name']}"


def test_deployment_doc_names_every_key_and_variable() -> None:
    doc = (ROOT / "doc" / "deployment.rst").read_text()
    configs = [config for *_, config in csc_setups()]
    configs += [yaml.safe_load(text) or {} for text in plain_configs().values()]
    keys = {key for config in configs for key in config}
    names = {name for _, _, c in csc_pods() for name in env_of(c)} | set().union(*(variables(c) for c in configs))
    missing = sorted(n for n in keys | names if f"``{n}``" not in doc)
    assert not missing, f"doc/deployment.rst does not describe {missing}"
    assert "allowed-failures" in doc


# -- image and commands --


def console_scripts() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def test_one_image_everywhere() -> None:
    images = {c["image"] for _, spec in pod_specs() for c in spec["containers"]}
    assert len(images) == 1, f"CSC, scheduler and workers must run one image, not {sorted(images)}"


def test_entry_commands_exist() -> None:
    allowed = console_scripts() | {"dask"}
    for label, spec in pod_specs():
        for c in spec["containers"]:
            args = argv(c)
            assert args and args[0] in allowed, f"{label}: {args[:1]} is neither a console script nor dask"
            if args[0] == "dask":
                assert args[1] in ("scheduler", "worker"), args
    for script in ("scheduler.sh", "worker.sh", "csc.sh"):
        execs = re.findall(r"^exec (\S+(?: (?:scheduler|worker))?)", (PLAIN / script).read_text(), re.MULTILINE)
        assert execs and all(e.split()[0] in allowed for e in execs), f"{script}: exec {execs}"
    assert re.findall(r"^exec (\S+ \S+)", (PLAIN / "scheduler.sh").read_text(), re.MULTILINE) == ["dask scheduler"]
    worker = (PLAIN / "worker.sh").read_text()
    assert re.findall(r"^exec (\S+ \S+)", worker, re.MULTILINE) == ["dask worker"]
    assert f"--preload {PRELOAD}\n" in worker


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last matching pattern wins)."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()]
    ignored = False
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern == "**" or any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerfile_installs_the_package() -> None:
    instructions = dockerfile_instructions()
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert froms and froms[-1].split()[0].startswith("python:3.11-slim"), froms
    assert not [op for op, _ in instructions if op == "ENTRYPOINT"], "manifests give whole command lines"
    copies = {}
    for op, arg in instructions:
        if op == "COPY":
            *sources, dest = shlex.split(arg)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                copies[source] = dest
    for needed in ("pyproject.toml", "python"):
        assert needed in copies, f"the Dockerfile does not COPY {needed}"
    src_dir = copies["pyproject.toml"].rstrip("/")
    installs = [arg for op, arg in instructions if op == "RUN" and re.search(r"\bpip install\b", arg)]
    assert any(re.search(rf"pip install (?:[^&;]* )?{re.escape(src_dir)}/?(\s|$)", run) for run in installs), (
        f"no RUN pip install {src_dir}"
    )
    assert not any(re.search(r"(\s-e\s|--editable)", run) for run in installs), "install it, not editable"
    # The package build reads these: pyproject's readme and license files, and the sources.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name in [project["readme"], *project.get("license-files", [])]:
        assert name in copies and not dockerignored(name), f"{name} is not in the build context"
    tracked = subprocess.run(["git", "ls-files", "python"], cwd=ROOT, capture_output=True, text=True, check=True)
    sources = tracked.stdout.split()
    assert sources and not [s for s in sources if dockerignored(s)], "some package files are .dockerignored"
    assert dockerignored(".venv/bin/python") and dockerignored(".git/config")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    last_run = max(i for i, (op, _) in enumerate(instructions) if op == "RUN")
    last_user = max(i for i, (op, _) in enumerate(instructions) if op == "USER")
    assert last_user > last_run
    for op, arg in instructions:
        if op in ("ENV", "ARG"):
            assert not _SECRET_NAME_RE.search(arg), f"{op} {arg}: no secrets in the image"


def test_the_image_s_install_holds_every_package_file(tmp_path: Path) -> None:
    """What the Dockerfile COPYs builds a wheel (non-editable, as in the image) with every file under
    ``python/`` that git tracks: schemas, SAL interfaces, camera description, the page's templates."""
    context = tmp_path / "context"
    for op, arg in dockerfile_instructions():
        if op != "COPY":
            continue
        *sources, dest = shlex.split(arg)
        target = context / dest.lstrip("/")
        for source in sources:
            if (ROOT / source).is_dir():  # as docker: the directory's contents, into the destination
                ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
                shutil.copytree(ROOT / source, target, ignore=ignore, dirs_exist_ok=True)
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / Path(source).name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
    installs = [arg for op, arg in dockerfile_instructions() if op == "RUN" and "pip install" in arg]
    src = context / re.search(r"pip install (\S+)", installs[0]).group(1).lstrip("/")  # type: ignore[union-attr]
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"the image's package build failed:\n{build.stdout}\n{build.stderr}"
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = {name for name in zf.namelist() if ".dist-info/" not in name}
        entry_points = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    tracked = subprocess.run(["git", "ls-files", "python"], cwd=ROOT, capture_output=True, text=True, check=True)
    package_files = {str(PurePosixPath(path).relative_to("python")) for path in tracked.stdout.split()}
    missing = sorted(package_files - in_wheel)
    assert not missing, f"the installed package would lack {len(missing)} files: {missing[:10]}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for command in project["scripts"]:
        assert re.search(rf"^{re.escape(command)}\s*=", entry_points, re.MULTILINE), f"no {command} in the wheel"


# -- the plain recipe, run --


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_plain_scheduler_and_worker_run(tmp_path: Path) -> None:
    """scheduler.sh and worker.sh on loopback: the worker joins with the preload imported."""
    from distributed import Client

    port, dashboard = free_port(), free_port()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env |= {"RA_SCHEDULER_PORT": str(port), "RA_DASHBOARD_ADDRESS": f"127.0.0.1:{dashboard}"}
    env["RAPID_ANALYSIS_SCHEDULER_ADDRESS"] = f"tcp://127.0.0.1:{port}"
    processes = []
    try:
        for script in ("scheduler.sh", "worker.sh"):
            log = (tmp_path / f"{script}.log").open("w")
            processes.append(
                subprocess.Popen([str(PLAIN / script)], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
            )
            time.sleep(0.5)
        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as client:
            client.wait_for_workers(1, timeout=30)
            workers = client.scheduler_info()["workers"]
            assert {w["host"] for w in workers.values()} == {"127.0.0.1"}
            assert all(client.run(lambda: PRELOAD in sys.modules).values())
            # Every built-in pipeline imported at start (dask_setup), not in its first job.
            assert all(client.run(lambda: "lsst.ts.rapidanalysis.pipelines.sfm" in sys.modules).values())
            assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 1
            # The scheduler preload: a CSC's demand counts in the autoscaling target.
            client.set_metadata([*DEMAND_KEY, "LSSTCam"], {"slots": 40, "time": time.time()})
            assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.adaptive_target()) == 40
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
