#!/usr/bin/python3
"""Checks packaging/kubernetes/*.yaml and packaging/container/Containerfile: YAML syntax,
the Kubernetes objects' required fields and the wiring the docs promise (hostPID, the
socket's hostPath, the ConfigMap mounted at /etc/nsbroker), and writes the ConfigMap's
nsbroker.conf to OUT for nsbrokerd --check-config. There is no cluster here to apply them.
  check_manifests.py SOURCE_DIR OUT"""
import re
import sys

import yaml

src, out = sys.argv[1], sys.argv[2]


def fail(message):
    sys.exit(f"FAIL: {message}")


with open(f"{src}/packaging/kubernetes/nsbroker.yaml") as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
by_kind = {}
for d in docs:
    for field in ("apiVersion", "kind", "metadata"):
        if field not in d:
            fail(f"an object without {field}: {d}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"].get("name", "")):
        fail(f"{d['kind']}: bad metadata.name")
    by_kind[d["kind"]] = d
expected = {"Namespace": "v1", "ConfigMap": "v1", "DaemonSet": "apps/v1"}
for kind, api in expected.items():
    if by_kind.get(kind, {}).get("apiVersion") != api:
        fail(f"no {kind} of apiVersion {api}")

namespace = by_kind["Namespace"]["metadata"]["name"]
config_map = by_kind["ConfigMap"]
ds = by_kind["DaemonSet"]
for obj in (config_map, ds):
    if obj["metadata"].get("namespace") != namespace:
        fail(f"{obj['kind']} is not in namespace {namespace}")
spec = ds["spec"]
if spec["selector"]["matchLabels"].items() - spec["template"]["metadata"]["labels"].items():
    fail("the DaemonSet's selector does not match its pod template")
pod = spec["template"]["spec"]
if pod.get("hostPID") is not True:
    fail("the pod needs hostPID: true")
volumes = {v["name"]: v for v in pod["volumes"]}
(container,) = pod["containers"]
mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
for m in container["volumeMounts"]:
    if m["name"] not in volumes:
        fail(f"volumeMount {m['name']} names no volume")
if volumes[mounts["/run/nsbroker"]].get("hostPath", {}).get("path") != "/run/nsbroker":
    fail("/run/nsbroker is not the node's (hostPath)")
config_volume = volumes[mounts["/etc/nsbroker"]]
if config_volume.get("configMap", {}).get("name") != config_map["metadata"]["name"]:
    fail("/etc/nsbroker is not the ConfigMap")
caps = container["securityContext"]["capabilities"]
if caps.get("drop") != ["ALL"] or container["securityContext"].get("privileged"):
    fail("the broker must not be privileged, and must drop every capability it does not add")
with open(out, "w") as f:
    f.write(config_map["data"]["nsbroker.conf"])

with open(f"{src}/packaging/container/Containerfile") as f:
    lines = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
if not re.fullmatch(r"FROM \S*debian:bookworm\S*", lines[0]):
    fail(f"the image is not Debian 12 based: {lines[0]}")
instructions = {l.split()[0] for l in lines if not l.startswith("&&")}
known = {"FROM", "COPY", "RUN", "VOLUME", "STOPSIGNAL", "ENTRYPOINT", "CMD", "ENV", "LABEL"}
if not instructions <= known:
    fail(f"unknown instructions: {instructions - known}")
if not any(l.startswith("COPY nsbroker_*.deb") for l in lines):
    fail("the image does not install the .deb")
entry = re.search(r'ENTRYPOINT \["([^"]+)"\]', "\n".join(lines))
if not entry or f"install -m 0755 /tmp/nsbroker/entrypoint.sh {entry.group(1)}" not in "\n".join(lines):
    fail("the ENTRYPOINT is not the installed entrypoint.sh")
print(f"manifests: {len(docs)} objects, Containerfile: {len(lines)} lines, OK")
