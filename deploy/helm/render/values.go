// Values as Helm reads and merges them, and Helm's YAML and JSON template functions.
//
// Helm reads values with sigs.k8s.io/yaml: YAML is converted to JSON and decoded with
// encoding/json, so every number becomes a float64 (the reason 1000000 renders as 1e+06 in a
// Helm template) and every map key a string. readValuesFile does the same with yaml.v2 and
// encoding/json. Several values files are merged first (later wins, maps merged deeply), then
// coalesced over the chart's defaults: a null in the user's values deletes the default key.
// toYaml marshals through JSON to YAML as sigs.k8s.io/yaml does (sorted keys, no trailing
// newline); the from* functions put a parse error into the result instead of failing.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	yaml "gopkg.in/yaml.v2"
)

func readValuesFile(file string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	values := map[string]interface{}{}
	if err := yamlUnmarshalJSONStyle(raw, &values); err != nil {
		return nil, fmt.Errorf("failed to parse %s: %v", file, err)
	}
	if values == nil {
		values = map[string]interface{}{}
	}
	return values, nil
}

// yamlUnmarshalJSONStyle decodes YAML into target the way sigs.k8s.io/yaml.Unmarshal does.
func yamlUnmarshalJSONStyle(raw []byte, target interface{}) error {
	var parsed interface{}
	if err := yaml.Unmarshal(raw, &parsed); err != nil {
		return fmt.Errorf("error converting YAML to JSON: %v", err)
	}
	jsonable, err := jsonCompatible(parsed)
	if err != nil {
		return fmt.Errorf("error converting YAML to JSON: %v", err)
	}
	encoded, err := json.Marshal(jsonable)
	if err != nil {
		return fmt.Errorf("error converting YAML to JSON: %v", err)
	}
	if err := json.Unmarshal(encoded, target); err != nil {
		return fmt.Errorf("error unmarshaling JSON: while decoding JSON: %v", err)
	}
	return nil
}

func jsonCompatible(value interface{}) (interface{}, error) {
	switch typed := value.(type) {
	case map[interface{}]interface{}:
		out := make(map[string]interface{}, len(typed))
		for key, item := range typed {
			converted, err := jsonCompatible(item)
			if err != nil {
				return nil, err
			}
			out[mapKey(key)] = converted
		}
		return out, nil
	case []interface{}:
		out := make([]interface{}, len(typed))
		for i, item := range typed {
			converted, err := jsonCompatible(item)
			if err != nil {
				return nil, err
			}
			out[i] = converted
		}
		return out, nil
	default:
		return value, nil
	}
}

func mapKey(key interface{}) string {
	switch typed := key.(type) {
	case string:
		return typed
	case nil:
		return "null"
	case float64:
		return strconv.FormatFloat(typed, 'g', -1, 32)
	default:
		return fmt.Sprint(typed)
	}
}

// mergeValueFiles merges user values files in order, later files winning (Helm's mergeMaps).
func mergeValueFiles(base, next map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(base))
	for key, value := range base {
		out[key] = value
	}
	for key, value := range next {
		if nextTable, ok := value.(map[string]interface{}); ok {
			if baseTable, ok := out[key].(map[string]interface{}); ok {
				out[key] = mergeValueFiles(baseTable, nextTable)
				continue
			}
		}
		out[key] = value
	}
	return out
}

// coalesce fills user values with the chart's defaults (Helm's CoalesceValues): user values win,
// tables are merged key by key, and a user null removes the key.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(user))
	for key, value := range user {
		out[key] = value
	}
	for key, fallback := range defaults {
		value, present := out[key]
		switch {
		case !present:
			out[key] = fallback
		case value == nil:
			delete(out, key)
		default:
			userTable, userIsTable := value.(map[string]interface{})
			defaultTable, defaultIsTable := fallback.(map[string]interface{})
			if userIsTable && defaultIsTable {
				out[key] = coalesce(userTable, defaultTable)
			} else if userIsTable != defaultIsTable && fallback != nil {
				fmt.Fprintf(os.Stderr, "coalesce.go: warning: cannot overwrite table with non table for %s (%v)\n", key, fallback)
			}
		}
	}
	return out
}

func toYAML(v interface{}) string {
	out, err := marshalYAML(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(out, "\n")
}

func marshalYAML(v interface{}) (string, error) {
	encoded, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var generic interface{}
	if err := yaml.Unmarshal(encoded, &generic); err != nil {
		return "", err
	}
	out, err := yaml.Marshal(generic)
	return string(out), err
}

func fromYAML(text string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yamlUnmarshalJSONStyle([]byte(text), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(text string) []interface{} {
	a := []interface{}{}
	if err := yamlUnmarshalJSONStyle([]byte(text), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	out, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(out)
}

func toJSONIndent(v interface{}) (string, error) {
	out, err := json.MarshalIndent(v, "", "  ")
	return string(out), err
}

func fromJSON(text string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(text string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(text), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

// checkYAML reports whether one rendered document parses, as Helm checks before installing.
func checkYAML(doc string) error {
	var parsed interface{}
	return yaml.Unmarshal([]byte(doc), &parsed)
}
