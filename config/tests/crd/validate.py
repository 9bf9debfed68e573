"""Validates RateLimit documents against the CRD's schema, offline.

Usage: validate.py CRD.yaml < texts.json
Reads a JSON list of YAML texts (quota files) and prints, per text, a list with one item
per `kind: RateLimit` document in it: null when the schema accepts it, else the first
error as "path: message". Other documents are skipped.

kubernetes-validate checks the CRD object itself but cannot check a custom resource against
a given CRD, so this uses the jsonschema library it installs (Draft 4, the JSON Schema an
OpenAPI v3.0 schema is based on). Unknown fields are refused, as `kubectl apply` does with
its default strict field validation. It first checks the rules that make a schema
structural (Kubernetes refuses a CRD otherwise) and fails on any it breaks.
"""

import json
import sys

import jsonschema
import yaml

JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# Not allowed inside a junctor of a structural schema.
NOT_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")


def structural_problems(node, where="", in_junctor=False, outside_properties=()):
    """The rules of a structural schema this node breaks, as strings."""
    problems = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            problems += structural_problems(item, f"{where}[{i}]", in_junctor, outside_properties)
        return problems
    if not isinstance(node, dict):
        return problems
    if in_junctor:
        problems += [f"{where}: {key} inside a junctor" for key in NOT_IN_JUNCTORS if key in node]
        problems += [
            f"{where}.properties.{key}: not specified outside the junctor"
            for key in node.get("properties", {})
            if key not in outside_properties
        ]
    elif "type" not in node:
        problems.append(f"{where}: no type")
    if node.get("uniqueItems") is True:
        problems.append(f"{where}: uniqueItems")
    properties = node.get("properties", {})
    for key, child in properties.items():
        # Inside a junctor, a property's schema is checked where it is specified outside.
        if not in_junctor:
            problems += structural_problems(child, f"{where}.properties.{key}")
    if "items" in node and not in_junctor:
        problems += structural_problems(node["items"], f"{where}.items")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{where}.additionalProperties")
    # A junctor nested in a junctor checks against the schema outside both.
    outside = outside_properties if in_junctor else properties
    for junctor in JUNCTORS:
        if junctor in node:
            problems += structural_problems(node[junctor], f"{where}.{junctor}", True, outside)
    return problems


def strict(node):
    """The schema with unknown fields refused wherever it lists the fields."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: (value if key in JUNCTORS else strict(value)) for key, value in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def main():
    with open(sys.argv[1]) as f:
        crd = yaml.safe_load(f)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems = structural_problems(schema)
    if problems:
        sys.exit("the schema is not structural:\n" + "\n".join(problems))
    validator = jsonschema.Draft4Validator(strict(schema))
    results = []
    for text in json.load(sys.stdin):
        results.append([])
        for doc in yaml.safe_load_all(text):
            if not isinstance(doc, dict) or "kind" not in doc:
                continue
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            if errors:
                path = ".".join(str(p) for p in errors[0].absolute_path)
                results[-1].append(f"{path}: {errors[0].message}")
            else:
                results[-1].append(None)
    print(json.dumps(results))


main()
