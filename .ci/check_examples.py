"""Every example in the spec is valid against its own schema: media-type, parameter and
header examples, and each schema's `example`/`examples` at any depth.

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


SUBSCHEMA_LISTS = ("oneOf", "anyOf", "allOf", "prefixItems")
SUBSCHEMAS = ("items", "not", "additionalProperties", "contains", "if", "then", "else")


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

    def walk_schema(where, schema):
        """A schema's own `example`/`examples`, then every schema inside it."""
        if not isinstance(schema, dict):
            return
        if "example" in schema:
            check(f"{where} example", schema, schema["example"])
        for n, example in enumerate(schema.get("examples", [])):
            check(f"{where} examples[{n}]", schema, example)
        for name, subschema in schema.get("properties", {}).items():
            walk_schema(f"{where}.{name}", subschema)
        for keyword in SUBSCHEMA_LISTS:
            for n, subschema in enumerate(schema.get(keyword, [])):
                walk_schema(f"{where}/{keyword}[{n}]", subschema)
        for keyword in SUBSCHEMAS:
            walk_schema(f"{where}/{keyword}", schema.get(keyword))

    def walk_with_schema(where, holder):
        """A media type or a parameter: its examples against its schema, then the schema."""
        schema = holder.get("schema", {})
        if "example" in holder:
            check(f"{where} example", schema, holder["example"])
        for name, example in holder.get("examples", {}).items():
            if "value" in example:
                check(f"{where} example {name}", schema, example["value"])
        walk_schema(f"{where} schema", schema)

    for name, schema in document.get("components", {}).get("schemas", {}).items():
        walk_schema(f"schema {name}", schema)
    for path_name, item in document["paths"].items():
        for method, operation in item.items():
            at = f"{method} {path_name}"
            for parameter in operation.get("parameters", []):
                walk_with_schema(f"{at} parameter {parameter.get('name')}", parameter)
            for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
                walk_with_schema(f"{at} request {media_type}", content)
            for status, response in operation.get("responses", {}).items():
                for media_type, content in response.get("content", {}).items():
                    walk_with_schema(f"{at} {status} {media_type}", content)
                for name, header in response.get("headers", {}).items():
                    walk_with_schema(f"{at} {status} header {name}", header)

    for fault in faults:
        print(fault)
    print(f"examples checked: {checked}, invalid: {len(faults)}")
    return 1 if faults or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
