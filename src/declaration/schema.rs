//! JSON Schema of the declaration file format, for editors (`rangekeeper schema`).
//!
//! Written by hand because the file's parser keeps source locations with custom serde
//! visitors; a test checks that every key the parser accepts is described here.

use serde_json::{Value, json};

/// The JSON Schema (draft 2020-12) of declaration files, version 1.
pub fn schema() -> Value {
    let entry = json!({
        "oneOf": [
            {"type": "string", "description": "A CIDR (`203.0.113.0/24`), a bare address (`198.51.100.7`, read as /32 or /128), or the name of a set."},
            {
                "type": "object",
                "properties": {
                    "cidr": {"type": "string", "description": "A CIDR, a bare address, or a set name."},
                    "note": {"type": "string", "description": "Why this entry is here."}
                },
                "required": ["cidr"],
                "additionalProperties": false
            }
        ]
    });
    let list = json!({"type": "array", "items": {"$ref": "#/$defs/entry"}});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://rangekeeper.dev/schema/v1.json",
        "title": "rangekeeper declaration",
        "description": "Named sets of IP ranges, and which targets may be reached from which sets.",
        "type": "object",
        "required": ["version"],
        "anyOf": [{"required": ["targets"]}, {"required": ["discover"]}],
        "additionalProperties": false,
        "properties": {
            "version": {"const": 1, "description": "The file format version."},
            "sets": {
                "type": "object",
                "description": "Named sets of ranges. Names: a letter, then letters, digits, `-` or `_`.",
                "propertyNames": {"pattern": "^[A-Za-z][A-Za-z0-9_-]*$"},
                "additionalProperties": {"$ref": "#/$defs/set"}
            },
            "targets": {
                "type": "object",
                "description": "What to keep restricted, and to which sets.",
                "additionalProperties": {"$ref": "#/$defs/target"}
            },
            "discover": {
                "type": "object",
                "description": "Templates that providers expand into targets: each lists the clusters it can see (aks: a subscription, optionally one resourceGroup; eks: regions; gke: a project, optionally one location), filtered by `tags` (gke: `labels`), and every cluster found becomes a target named `aks/<subscription>/<group>/<cluster>`, `eks/<region>/<cluster>` or `gke/<project>/<location>/<cluster>` with the template's allow, protect and policy. A target of `targets` with the same name overrides the discovered one; a cluster still being provisioned is pending (listed, not planned).",
                "required": ["templates"],
                "additionalProperties": false,
                "properties": {
                    "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d))+$", "default": "5m", "description": "How often `reconcile` lists every template again (a cluster being provisioned is looked at again within 30s; a failed listing keeps the last good list and is retried with backoff)."},
                    "templates": {
                        "type": "object",
                        "minProperties": 1,
                        "description": "Templates by name (a letter, then letters, digits, `-` or `_`).",
                        "propertyNames": {"pattern": "^[A-Za-z][A-Za-z0-9_-]*$"},
                        "additionalProperties": {"$ref": "#/$defs/template"}
                    }
                }
            }
        },
        "$defs": {
            "entry": entry,
            "list": list,
            "set": {
                "oneOf": [
                    {"$ref": "#/$defs/list"},
                    {
                        "type": "object",
                        "properties": {
                            "include": {"$ref": "#/$defs/list", "description": "Sets and CIDRs to include."},
                            "except": {"$ref": "#/$defs/list", "description": "Sets and CIDRs to take out again."},
                            "description": {"type": "string"}
                        },
                        "required": ["include"],
                        "additionalProperties": false
                    },
                    {
                        "type": "object",
                        "description": "A live source: fetched (https JSON list, DNS, or this machine's egress IP), validated like literal ranges, cached in the state directory and refreshed on its own schedule. A failed fetch keeps the last good value.",
                        "properties": {
                            "url": {"type": "string", "format": "uri", "description": "An https URL of a JSON document (plain http only for loopback hosts)."},
                            "select": {"type": "string", "description": "A JSON pointer to the list, e.g. `/actions` or `/prefixes` (default: the document itself)."},
                            "where": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}, "description": "Keep only the objects whose fields equal these values, e.g. {service: EC2, region: eu-west-1}."},
                            "field": {"type": "string", "description": "Take this field of each object, e.g. `ip_prefix` (without it, the list holds strings)."},
                            "dns": {"type": "string", "description": "A host name: each A/AAAA address becomes a /32 or /128."},
                            "self": {
                                "oneOf": [
                                    {"const": true},
                                    {"type": "object", "properties": {"endpoints": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "uri"}}}, "required": ["endpoints"], "additionalProperties": false}
                                ],
                                "description": "This machine's egress IP, from echo endpoints that must agree (default: --self-echo, or two well-known https echo services)."
                            },
                            "refresh": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d))+$", "description": "How often to fetch again (default: url 1h, dns 5m, self 10m)."},
                            "timeout": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d))+$", "default": "30s", "description": "How long one fetch may take."},
                            "maxBytes": {"type": "integer", "minimum": 1, "default": 16777216, "description": "The largest response accepted (url only)."},
                            "description": {"type": "string"}
                        },
                        "oneOf": [
                            {"required": ["url"]},
                            {"required": ["dns"]},
                            {"required": ["self"]}
                        ],
                        "additionalProperties": false
                    }
                ]
            },
            "target": {
                "type": "object",
                "required": ["provider", "allow"],
                "properties": {
                    "provider": {"type": "string", "description": "The provider that holds this target's allow-list (see `rangekeeper providers`)."},
                    "description": {"type": "string"},
                    "allow": {"$ref": "#/$defs/list", "minItems": 1, "description": "Set names and CIDRs allowed to reach the target."},
                    "protect": {"$ref": "#/$defs/list", "description": "Ranges that must always stay allowed: a plan that would drop one is refused."},
                    "strict": {"type": "boolean", "default": false, "description": "Reject entries with host bits set instead of normalizing them, and refuse changes a provider only warns about (such as a port a policy cannot restrict)."},
                    "maxRanges": {"type": "integer", "minimum": 1, "description": "At most this many prefixes (default and upper bound: the provider's limit)."},
                    "allowPrivate": {"type": "boolean", "description": "Accept private and other non-global ranges (default: what the provider accepts)."},
                    "allowBroad": {"type": "boolean", "default": false, "description": "Accept ranges wider than /8 (IPv4) or /32 (IPv6), including 0.0.0.0/0."},
                    "onExceed": {"enum": ["error", "cover"], "default": "error", "description": "Over the range limit: refuse, or apply the optimal cover of at most maxRanges prefixes."},
                    "maxExtra": {
                        "oneOf": [
                            {"type": "integer", "minimum": 0},
                            {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?x$"}
                        ],
                        "description": "With onExceed: cover, the most extra addresses the cover may admit: a count, or a multiple of the declared count like \"2x\"."
                    },
                    "maxLeaseTtl": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d))+$", "description": "The longest lease `rangekeeper grant` and `exec` accept on this target, e.g. 2h (default: 12h)."}
                },
                "additionalProperties": true,
                "description": "Other keys are provider-specific (file: path, format, reload; aks: subscription, resourceGroup, cluster, ...)."
            },
            "template": {
                "allOf": [{"$ref": "#/$defs/target"}],
                "properties": {
                    "provider": {"type": "string", "description": "A provider that can discover targets (`validate` names them)."},
                    "tags": {
                        "type": "object",
                        "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                        "description": "Only clusters carrying every tag named, each with this value or one of these values (AKS compares tag keys without regard to case)."
                    },
                    "subscription": {"type": "string", "description": "aks: the subscription id whose managed clusters are listed."},
                    "resourceGroup": {"type": "string", "description": "aks: only the managed clusters of this resource group."},
                    "regions": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "eks: the regions whose clusters are listed."},
                    "labels": {
                        "type": "object",
                        "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                        "description": "gke: only clusters whose resourceLabels carry every label named, each with this value or one of these values (keys and values exact)."
                    },
                    "project": {"type": "string", "description": "gke: the project whose clusters are listed."},
                    "location": {"type": "string", "default": "-", "description": "gke: only the clusters of this region or zone (`-`, the default: every location of the project)."}
                },
                "description": "A target template: its provider, what to list (aks: subscription, resourceGroup, tags, cloud, armEndpoint, apiVersion; eks: regions, tags, profile; gke: project, location, labels, endpoint), and the allow, protect and policy of every target it finds."
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::raw::{SET_KEYS, TARGET_COMMON_KEYS, TOP_KEYS};

    #[test]
    fn schema_describes_every_key_the_parser_accepts() {
        let s = schema();
        for k in TOP_KEYS {
            assert!(s["properties"].get(*k).is_some(), "top-level key {k}");
        }
        for k in TARGET_COMMON_KEYS {
            assert!(
                s["$defs"]["target"]["properties"].get(*k).is_some(),
                "target key {k}"
            );
        }
        for k in crate::declaration::source::SOURCE_KEYS {
            assert!(
                s["$defs"]["set"]["oneOf"][2]["properties"]
                    .get(*k)
                    .is_some(),
                "source key {k}"
            );
        }
        for k in crate::declaration::raw::DISCOVER_KEYS {
            assert!(
                s["properties"]["discover"]["properties"].get(*k).is_some(),
                "discover key {k}"
            );
        }
        for k in SET_KEYS {
            assert!(
                s["$defs"]["set"]["oneOf"][1]["properties"]
                    .get(*k)
                    .is_some(),
                "set key {k}"
            );
        }
    }
}
