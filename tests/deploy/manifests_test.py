#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes manifests in deploy/kubernetes: the YAML parses (python3-yaml), the kustomization
names every manifest and builds (kubectl kustomize, no cluster needed), each cofferd container's
command line and the config file it mounts pass the built `cofferd --check-config`, its probes
ask the socket it listens on, and its securityContext is non-root, read-only, without capabilities.

usage: manifests_test.py SOURCE_DIR COFFERD     (CTest: manifests_test, label deploy)
"""
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

SRC, COFFERD = sys.argv[1], sys.argv[2]
KDIR = os.path.join(SRC, "deploy", "kubernetes")
failures = []


def fail(msg):
    failures.append(msg)
    print("manifests_test: FAIL: " + msg, file=sys.stderr)


def load_all():
    docs = {}
    for name in sorted(os.listdir(KDIR)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(KDIR, name), encoding="utf-8") as f:
            try:
                docs[name] = [d for d in yaml.safe_load_all(f) if d is not None]
            except yaml.YAMLError as e:
                fail(f"{name}: does not parse: {e}")
    return docs


def option(args, name):
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def check_config(where, args, config_maps, mounts, volumes, tmp):
    """Run cofferd --check-config on the container's args, its --config from the ConfigMap."""
    args = list(args)
    conf = option(args, "--config")
    if conf is not None:
        for m in mounts:
            if not conf.startswith(m["mountPath"].rstrip("/") + "/"):
                continue
            vol = volumes.get(m["name"], {})
            cm_name = vol.get("configMap", {}).get("name")
            key = conf[len(m["mountPath"].rstrip("/")) + 1:]
            if cm_name not in config_maps or key not in config_maps[cm_name].get("data", {}):
                fail(f"{where}: --config {conf} is not a key of a ConfigMap in the manifests")
                return
            path = os.path.join(tmp, f"{cm_name}-{key}")
            with open(path, "w", encoding="utf-8") as f:
                f.write(config_maps[cm_name]["data"][key])
            args[args.index(conf)] = path
            break
        else:
            fail(f"{where}: --config {conf} is not on a mounted ConfigMap")
            return
    r = subprocess.run([COFFERD, "--check-config"] + args, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{where}: cofferd --check-config {' '.join(args)} exited {r.returncode}:\n"
             f"{r.stderr}")
    else:
        print(f"{where}: cofferd --check-config: {r.stdout.strip()}")


def check_container(where, c, pod, config_maps, tmp):
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = c.get("volumeMounts", [])
    args = c.get("command", [])[1:] + c.get("args", [])
    check_config(where, args, config_maps, mounts, volumes, tmp)
    sock = option(args, "--socket")
    if sock is None or not any(sock.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts):
        fail(f"{where}: --socket {sock} is not on a mounted volume (the shared socket directory)")
    for probe in ("readinessProbe", "livenessProbe"):
        cmd = c.get(probe, {}).get("exec", {}).get("command", [])
        if cmd[:2] != ["/usr/bin/coffer", "health"] or option(cmd, "--socket") != sock:
            fail(f"{where}: {probe} must run `coffer health --socket {sock}`, not {cmd}")
        # liveness must not restart a degraded daemon (an HSM outage): --live; readiness reports it
        if ("--live" in cmd) != (probe == "livenessProbe"):
            fail(f"{where}: {probe} {'needs' if probe == 'livenessProbe' else 'must not use'} "
                 f"--live: {cmd}")
    version = subprocess.run([COFFERD, "--version"], capture_output=True, text=True).stdout.split()
    image = c.get("image", "")
    if len(version) < 2 or not image.endswith(":" + version[1]):
        fail(f"{where}: image {image} is not tagged with cofferd's version {version}")
    sc = c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True and
            sc.get("allowPrivilegeEscalation") is False and
            sc.get("capabilities", {}).get("drop") == ["ALL"] and
            not sc.get("capabilities", {}).get("add")):
        fail(f"{where}: securityContext must be non-root, read-only, no privilege escalation, "
             f"drop ALL and add nothing: {sc}")
    res = c.get("resources", {})
    if not (res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory")):
        fail(f"{where}: memory requests and limits are missing")
    return True


def main():
    docs = load_all()
    config_maps = {d["metadata"]["name"]: d for ds in docs.values() for d in ds
                   if d.get("kind") == "ConfigMap"}
    with open(os.path.join(KDIR, "kustomization.yaml"), encoding="utf-8") as f:
        kust = yaml.safe_load(f)
    listed = set(kust.get("resources", []))
    for name in docs:
        if name != "kustomization.yaml" and name not in listed:
            fail(f"kustomization.yaml does not list {name}")
    for name in listed:
        if not os.path.exists(os.path.join(KDIR, name)):
            fail(f"kustomization.yaml lists {name}, which does not exist")
    kubectl = shutil.which("kubectl")
    if kubectl:
        r = subprocess.run([kubectl, "kustomize", KDIR], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"kubectl kustomize: {r.stderr}")
        else:
            print(f"kubectl kustomize: {len(list(yaml.safe_load_all(r.stdout)))} objects")
    elif os.environ.get("CI") == "true":
        fail("kubectl is missing (apt-get install kubernetes-client)")
    else:
        print("manifests_test: SKIP kubectl kustomize (kubectl not installed)", file=sys.stderr)
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, ds in docs.items():
            for d in ds:
                pod = d.get("spec", {}).get("template", {}).get("spec")
                if pod is None:
                    continue
                for c in pod.get("containers", []):
                    if c.get("command", [""])[0].endswith("/cofferd"):
                        where = f"{name}: {d['kind']} {d['metadata']['name']}, container {c['name']}"
                        checked += check_container(where, c, pod, config_maps, tmp)
        # The check can fail: a renamed flag in a manifest is caught.
        r = subprocess.run([COFFERD, "--check-config", "--secret-dir", "/x"], capture_output=True,
                           text=True)
        if r.returncode != 2 or "command line: unknown option 'secret-dir'" not in r.stderr:
            fail(f"cofferd --check-config accepted a misspelt flag: {r.returncode} {r.stderr}")
        # --check-config starts nothing: no socket, no key needed.
        sock = os.path.join(tmp, "never.sock")
        r = subprocess.run([COFFERD, "--check-config", "--socket", sock, "--secrets-dir",
                            os.path.join(tmp, "no-such-dir")], capture_output=True, text=True)
        if r.returncode != 0 or os.path.exists(sock):
            fail(f"cofferd --check-config started something or failed: {r.returncode} {r.stderr}")
        # ... and every problem of a config file, each with its file and line.
        bad = os.path.join(tmp, "bad.conf")
        with open(bad, "w", encoding="utf-8") as f:
            f.write("# comment\nworkers = many\nsecret-dir = /x\nnamespace = velero\nno value\n")
        r = subprocess.run([COFFERD, "--check-config", "--config", bad], capture_output=True,
                           text=True)
        want = [f"cofferd: {bad}:2: invalid value for --workers: 'many'",
                f"cofferd: {bad}:3: unknown option 'secret-dir'",
                f"cofferd: {bad}:5: expected `name = value`",
                "cofferd: the configuration has 3 problems"]
        if r.returncode != 2 or any(w not in r.stderr for w in want):
            fail(f"cofferd --check-config on a bad file: exit {r.returncode}, {r.stderr}")
    if checked < 2:
        fail(f"found {checked} cofferd containers; expected the sidecar and the DaemonSet")
    if failures:
        return 1
    print(f"manifests_test: OK ({checked} cofferd containers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
