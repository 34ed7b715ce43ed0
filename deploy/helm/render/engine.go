// The template engine: text/template with sprig's functions and Helm's own, bound as Helm binds them.
//
// As in helm.sh/helm/v3/pkg/engine: all templates are parsed into one set named "gotpl" with
// missingkey=zero; partials (files starting with "_") are parsed but not rendered; each template
// gets .Template.Name and .Template.BasePath; "<no value>" is removed from the output. The
// function map is sprig's TxtFuncMap without env and expandenv, plus toYaml, fromYaml,
// fromYamlArray, toJson, fromJson, fromJsonArray, include (with Helm's recursion limit), tpl
// (a clone of the set that can include its own defines), required, fail (messages wrapped so
// the error names the template position and the message only, as Helm prints it), and lookup,
// which returns an empty map as `helm template` does without a cluster. toToml and fromToml are
// not provided (no TOML library is packaged); a chart that calls them fails to parse.
package main

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
)

const (
	warnStart        = "HELM_ERR_START"
	warnEnd          = "HELM_ERR_END"
	recursionMaxNums = 1000
)

var warnPattern = regexp.MustCompile(warnStart + `((?s).*)` + warnEnd)

func warnWrap(message string) string { return warnStart + message + warnEnd }

func baseFuncMap() template.FuncMap {
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	extra := template.FuncMap{
		"toYaml":        toYAML,
		"fromYaml":      fromYAML,
		"fromYamlArray": fromYAMLArray,
		"toJson":        toJSON,
		"fromJson":      fromJSON,
		"fromJsonArray": fromJSONArray,
		"lookup": func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
			return map[string]interface{}{}, nil
		},
		"required": func(message string, value interface{}) (interface{}, error) {
			if value == nil {
				return value, errors.New(warnWrap(message))
			}
			if text, ok := value.(string); ok && text == "" {
				return value, errors.New(warnWrap(message))
			}
			return value, nil
		},
		"fail": func(message string) (string, error) {
			return "", errors.New(warnWrap(message))
		},
	}
	for name, fn := range extra {
		funcs[name] = fn
	}
	return funcs
}

func includeFunc(t *template.Template, includedNames map[string]int) func(string, interface{}) (string, error) {
	return func(name string, data interface{}) (string, error) {
		if includedNames[name] > recursionMaxNums {
			return "", fmt.Errorf("rendering template has a nested reference name: %s: unable to execute template", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
}

func tplFunc(parent *template.Template, includedNames map[string]int) func(string, interface{}) (string, error) {
	return func(text string, values interface{}) (string, error) {
		t, err := parent.Clone()
		if err != nil {
			return "", fmt.Errorf("cannot clone template: %v", err)
		}
		t.Option("missingkey=zero")
		t.Funcs(template.FuncMap{"include": includeFunc(t, includedNames), "tpl": tplFunc(t, includedNames)})
		t, err = t.New(parent.Name()).Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf strings.Builder
		if err := t.Execute(&buf, values); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
}

// renderTemplates renders every non-partial template of the chart with the top-level object.
func renderTemplates(chart *Chart, top map[string]interface{}) (rendered map[string]string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rendering template failed: %v", r)
		}
	}()
	t := template.New("gotpl")
	t.Option("missingkey=zero")
	funcs := baseFuncMap()
	includedNames := map[string]int{}
	funcs["include"] = includeFunc(t, includedNames)
	funcs["tpl"] = tplFunc(t, includedNames)
	t.Funcs(funcs)

	names := sortedByDepth(chart.Templates)
	for _, name := range names {
		if _, err := t.New(name).Parse(chart.Templates[name]); err != nil {
			return nil, cleanupParseError(name, err)
		}
	}
	basePath := path.Join(chart.Metadata.Name, "templates")
	rendered = map[string]string{}
	for _, name := range names {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		top["Template"] = map[string]interface{}{"Name": name, "BasePath": basePath}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, top); err != nil {
			return nil, cleanupExecError(name, err)
		}
		rendered[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return rendered, nil
}

// sortedByDepth orders template names as Helm parses them: deeper paths first, then by name, reversed.
func sortedByDepth(templates map[string]string) []string {
	names := make([]string, 0, len(templates))
	for name := range templates {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := names[i], names[j]
		ca, cb := strings.Count(a, "/"), strings.Count(b, "/")
		if ca == cb {
			return a > b
		}
		return ca > cb
	})
	return names
}

func cleanupParseError(name string, err error) error {
	tokens := strings.Split(err.Error(), ": ")
	if len(tokens) == 1 {
		return fmt.Errorf("parse error in (%s): %s", name, err)
	}
	return fmt.Errorf("parse error at (%s): %s", tokens[1], tokens[len(tokens)-1])
}

func cleanupExecError(name string, err error) error {
	if _, ok := err.(template.ExecError); !ok {
		return err
	}
	tokens := strings.SplitN(err.Error(), ": ", 3)
	if len(tokens) != 3 {
		return fmt.Errorf("execution error in (%s): %s", name, err)
	}
	if parts := warnPattern.FindStringSubmatch(tokens[2]); len(parts) >= 2 {
		return fmt.Errorf("execution error at (%s): %s", tokens[1], parts[1])
	}
	return err
}
