"""The part of ``kustomize build`` that deploy/kubernetes/ uses, for tests on machines without kubectl (CI has
none): resources and components resolved recursively, ``namespace``, ``labels`` (pairs, also as selectors:
``includeSelectors`` is not used here, so only metadata labels), ``images``, JSON 6902 ``patches`` by kind and name
(applied with the jsonpatch library) and ``configMapGenerator`` files. Anything else in a kustomization is
refused, so a manifest change that needs more of kustomize fails loudly instead of being ignored."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

KNOWN = {"apiVersion", "kind", "resources", "components", "namespace", "labels", "images", "patches",
         "configMapGenerator"}


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kustomize build directory`` would print (ConfigMap names without the hash suffix).

    Raises:
        ValueError: a kustomization field this subset does not implement.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise ValueError(f"{directory}: kustomization fields not implemented here: {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in [*kustomization.get("resources", []), *kustomization.get("components", [])]:
        target = directory / entry
        objects.extend(build(target) if target.is_dir() else copy.deepcopy(_load(target)))
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for item in generator["files"]:
            key, _, file = item.rpartition("=")
            data[key or Path(file).name] = (directory / file).read_text(encoding="utf-8")
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        hits = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        if len(hits) != 1:
            raise ValueError(f"{directory}: patch target {target} matches {len(hits)} objects")
        patched = jsonpatch.apply_patch(hits[0], yaml.safe_load(patch["patch"]))
        objects[objects.index(hits[0])] = patched
    for image in kustomization.get("images", []):
        for obj in objects:
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    for label in kustomization.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
    if "namespace" in kustomization:
        for obj in objects:
            obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects
