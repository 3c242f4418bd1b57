"""Every example in the spec is valid against its own schema.

openapi-spec-validator checks the document's shape, not its examples; a wrong example is
what Swagger UI shows and what client authors copy. Uses the jsonschema that the validator
and schemathesis install.

Usage: check_examples.py openapi/openapi.json
"""

import json
import sys

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT_URI = "urn:partner-gateway:openapi"


def absolute_refs(node):
    """Local `#/...` references made absolute, so they resolve inside any sub-schema."""
    if isinstance(node, dict):
        return {
            key: DOCUMENT_URI + value if key == "$ref" and value.startswith("#") else absolute_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [absolute_refs(item) for item in node]
    return node


def main(path):
    document = absolute_refs(json.load(open(path, encoding="utf-8")))
    registry = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    checked, faults = 0, []

    def check(where, schema, example):
        nonlocal checked
        checked += 1
        validator = jsonschema.Draft202012Validator(
            schema, registry=registry, format_checker=jsonschema.FormatChecker()
        )
        faults.extend(f"{where}: {error.message}" for error in validator.iter_errors(example))

    for path_name, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                for media_type, content in response.get("content", {}).items():
                    if "example" in content:
                        check(f"{method} {path_name} {status} {media_type}", content["schema"], content["example"])
            for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
                for name, example in content.get("examples", {}).items():
                    check(f"{method} {path_name} request example {name}", content["schema"], example["value"])
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if "example" in schema:
            check(f"schema {name}", {"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"}, schema["example"])

    for fault in faults:
        print(fault)
    print(f"examples checked: {checked}, invalid: {len(faults)}")
    return 1 if faults or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
