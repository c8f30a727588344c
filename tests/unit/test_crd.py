"""The Experiment CRD: generated, checked in, structural, complete, and it accepts the examples.

No JSON-schema package is needed: the CRD uses a small OpenAPI subset (with `nullable`, boolean
`exclusiveMinimum` and CEL rules, which a JSON-Schema validator would get wrong anyway), and
`_violations` below checks data against exactly that subset the way the API server does.
"""

from __future__ import annotations

import copy
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from judgelab.crd import experiment_crd, openapi_schema, render_crd_yaml
from judgelab.spec import Experiment

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "charts/judgelab/crds/experiments.judgelab.io.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
ALLOWED_KEYS = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum",
    "default", "nullable", "format", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "multipleOf",
    "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
}  # fmt: skip
FOREIGN_FIELDS_RULE = re.compile(r"^self\.(\w+) != '([^']+)' \|\| !\((.+)\)$")


def _nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path or "<root>", schema)]
    for name, sub in schema.get("properties", {}).items():
        found += _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _nodes(schema["additionalProperties"], f"{path}{{}}")
    return found


def _cel(rule: str, value: dict[str, Any]) -> bool:
    """Evaluate the one CEL shape the generator writes (a branch takes no foreign fields)."""
    match = FOREIGN_FIELDS_RULE.match(rule)
    assert match, f"the test cannot evaluate CEL rule {rule!r}; teach it the new shape"
    field, tag, present = match.groups()
    names = re.findall(r"has\(self\.(\w+)\)", present)
    assert " || ".join(f"has(self.{n})" for n in names) == present
    return value.get(field) != tag or not any(n in value for n in names)


def _violations(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """What the API server would reject (or silently prune) in `value`."""
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: null is not allowed"]
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    kind = schema["type"]
    if not isinstance(value, TYPES[kind]) or (kind in ("integer", "number") and value is True):
        return [f"{path}: {value!r} is not {kind}"]
    if isinstance(value, bool) and kind != "boolean":
        return [f"{path}: {value!r} is not {kind}"]
    problems = _scalar_violations(schema, value, path)
    if kind == "array":
        for index, item in enumerate(value):
            problems += _violations(schema["items"], item, f"{path}[{index}]")
    if kind == "object":
        problems += _object_violations(schema, value, path)
    return problems


def _scalar_violations(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{path}: longer than {schema['maxLength']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{path}: shorter than {schema['minLength']}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(f"{path}: more than {schema['maxItems']} items")
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") and value == low):
            problems.append(f"{path}: {value} below minimum {low}")
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or (schema.get("exclusiveMaximum") and value == high):
            problems.append(f"{path}: {value} above maximum {high}")
    return problems


def _object_violations(schema: dict[str, Any], value: dict[str, Any], path: str) -> list[str]:
    problems = [
        f"{path}.{name}: required" for name in schema.get("required", []) if name not in value
    ]
    properties = schema.get("properties")
    for key, item in value.items():
        if properties is not None and key in properties:
            problems += _violations(properties[key], item, f"{path}.{key}")
        elif isinstance(schema.get("additionalProperties"), dict):
            problems += _violations(schema["additionalProperties"], item, f"{path}.{key}")
        elif path != ".metadata":  # the rest of ObjectMeta is the API server's own schema
            problems.append(f"{path}.{key}: unknown field (would be pruned)")
    for rule in schema.get("x-kubernetes-validations", []):
        if not _cel(rule["rule"], value):
            problems.append(f"{path}: {rule['message']}")
    return problems


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text(encoding="utf-8"))
    return loaded


# --- generation --------------------------------------------------------------------------------


def test_checked_in_crd_is_current() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == render_crd_yaml(), (
        "regenerate: judgelab crd > charts/judgelab/crds/experiments.judgelab.io.yaml"
    )


def test_rendering_is_deterministic_and_marked_generated() -> None:
    text = render_crd_yaml()
    assert text == render_crd_yaml()
    assert text.startswith("# generated by `judgelab crd`; do not edit\n")
    assert yaml.safe_load(text) == experiment_crd()


def test_crd_identity() -> None:
    crd = experiment_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "experiments.judgelab.io"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == ("judgelab.io", "Namespaced")
    assert spec["names"]["kind"] == "Experiment"
    assert spec["names"]["plural"] == "experiments"
    assert spec["names"]["shortNames"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns_point_at_declared_status_fields() -> None:
    (version,) = experiment_crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Phase", "Step", "Proxy", "Gold", "Hacking", "Age"]
    status = openapi_schema()["properties"]["status"]["properties"]
    for name, column in columns.items():
        if name == "Age":
            assert column["jsonPath"] == ".metadata.creationTimestamp"
            continue
        field = column["jsonPath"].removeprefix(".status.")
        assert field in status, f"{name} column reads an undeclared status field"
        declared = status[field]["type"]
        assert column["type"] == declared, (name, column["type"], declared)


def test_status_declares_conditions_and_arms() -> None:
    status = openapi_schema()["properties"]["status"]["properties"]
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) >= {"type", "status", "reason", "message", "lastTransitionTime"}
    assert "observedGeneration" in condition and "observedGeneration" in status
    arm = status["arms"]["items"]["properties"]
    assert set(arm) >= {"name", "step", "proxyReward", "goldReward", "hacking"}
    assert status["phase"]["enum"][0] == "Pending"


# --- structural schema -------------------------------------------------------------------------


def test_rendered_yaml_has_no_anchors_or_aliases() -> None:
    assert not re.search(r"[&*]id\d+", render_crd_yaml()), "aliases confuse reviewers and tools"


def test_schema_is_structural() -> None:
    for path, node in _nodes(openapi_schema()):
        assert set(node) <= ALLOWED_KEYS, f"{path}: {set(node) - ALLOWED_KEYS}"
        for junctor in ("anyOf", "oneOf", "allOf", "not"):
            assert junctor not in node, f"{path}: {junctor} (needs care to stay structural)"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            intended = path.endswith((".status.kopf", ".extra_body"))
            assert intended, f"{path}: unknown fields kept unintentionally"
        assert "type" in node, f"{path}: every node needs a type"
        if "properties" in node:
            assert node["type"] == "object", path
            assert "additionalProperties" not in node, path
        if "additionalProperties" in node:
            assert isinstance(node["additionalProperties"], dict), f"{path}: must be a schema"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{path}: {bound} must be a boolean (OpenAPI 3.0)"
        if node.get("nullable"):
            assert "enum" not in node, f"{path}: null would fail the enum check"
        assert node.get("default", 0) is not None, f"{path}: null default"


def test_no_json_schema_leftovers_anywhere() -> None:
    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for bad in ("$ref", "$defs", "title", "discriminator", "const", "examples"):
                assert bad not in value, bad
            assert value.get("additionalProperties") is not False
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(openapi_schema())


def test_defaults_are_valid_for_their_fields() -> None:
    for path, node in _nodes(openapi_schema()):
        if "default" in node:
            assert _violations(node, node["default"], path) == []


def test_metadata_only_restricts_the_name() -> None:
    metadata = openapi_schema()["properties"]["metadata"]
    assert set(metadata["properties"]) == {"name"}
    assert set(metadata["properties"]["name"]) <= {"type", "pattern", "maxLength"}


def test_keyed_lists_have_required_keys() -> None:
    for path, node in _nodes(openapi_schema()):
        for key in node.get("x-kubernetes-list-map-keys", []):
            assert key in node["items"].get("required", []), f"{path}: map key {key} not required"


def test_discriminated_union_is_one_object_with_cel_rules() -> None:
    algorithm = openapi_schema()["properties"]["spec"]["properties"]["policy"]["properties"][
        "algorithm"
    ]
    assert algorithm["type"] == "object"
    assert algorithm["properties"]["name"]["enum"] == ["grpo", "dpo-self-judge"]
    assert algorithm["required"] == ["name"]
    assert len(algorithm["x-kubernetes-validations"]) == 2
    # Branch-only defaults would leak into the other branch; the API server must not apply them.
    assert "default" not in algorithm["properties"]["group_size"]
    assert "8" in algorithm["properties"]["group_size"]["description"]


# --- completeness ------------------------------------------------------------------------------


def _check_model_in_schema(model: type[BaseModel], node: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in node.get("properties", {}):
            missing.append(f"{path}.{key}")
            continue
        missing += _check_type_in_schema(field.annotation, node["properties"][key], f"{path}.{key}")
    return missing


def _check_type_in_schema(tp: Any, node: dict[str, Any], path: str) -> list[str]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _check_model_in_schema(tp, node, path)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return _check_type_in_schema(args[0], node["items"], f"{path}[]")
    if origin is dict and args[1] is Any:
        assert node.get("x-kubernetes-preserve-unknown-fields") is True, path
        return []
    if origin is dict:
        return _check_type_in_schema(args[1], node["additionalProperties"], f"{path}{{}}")
    missing = []
    for arg in args:  # unions: every branch's fields live in the one merged object
        if arg is not type(None):
            missing += _check_type_in_schema(arg, node, path)
    return missing


def test_every_model_field_is_in_the_schema() -> None:
    schema = openapi_schema()
    for part in ("spec", "status"):
        field = Experiment.model_fields[part]
        missing = _check_type_in_schema(field.annotation, schema["properties"][part], part)
        assert missing == []


def test_every_schema_field_has_a_description() -> None:
    spec = openapi_schema()["properties"]["spec"]
    undocumented = [
        path
        for path, node in _nodes(spec, ".spec")
        if not node.get("description") and not path.endswith(("[]", "{}"))
    ]
    assert undocumented == []


# --- the examples against the CRD --------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_the_crd_schema(path: Path) -> None:
    assert _violations(openapi_schema(), _example(path.name)) == []


def test_a_full_dump_passes_the_crd_schema() -> None:
    from judgelab.spec import load_experiment

    dumped = load_experiment(ROOT / "examples/quickstart.yaml").model_dump(
        by_alias=True, mode="json", exclude_none=True
    )
    assert _violations(openapi_schema(), dumped) == []


def test_the_crd_rejects_what_the_spec_rejects() -> None:
    schema = openapi_schema()
    base = _example("quickstart.yaml")

    foreign = copy.deepcopy(base)
    foreign["spec"]["policy"]["algorithm"]["num_candidates"] = 5
    assert any("does not take" in v for v in _violations(schema, foreign))

    typed = copy.deepcopy(base)
    typed["spec"]["policy"]["algorithm"]["group_size"] = "eight"
    assert any("group_size" in v for v in _violations(schema, typed))

    named = copy.deepcopy(base)
    named["metadata"]["name"] = "Not A Label"
    assert any("metadata.name" in v for v in _violations(schema, named))

    bounded = copy.deepcopy(base)
    bounded["spec"]["policy"]["algorithm"]["epsilon_high"] = 1.0
    assert any("epsilon_high" in v for v in _violations(schema, bounded))

    pruned = copy.deepcopy(base)
    pruned["spec"]["policy"]["algorithm"]["group_sise"] = 4
    assert any("group_sise" in v for v in _violations(schema, pruned))


def test_crd_manifest_passes_kubernetes_validate_strict() -> None:
    """The CRD object itself against the real apiextensions/v1 OpenAPI schema of a current k8s."""
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(experiment_crd(), version, strict=True)
