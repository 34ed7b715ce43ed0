// Command render renders a Helm chart the way `helm template` does, for machines with no helm binary.
//
// It loads a chart directory (Chart.yaml, values.yaml, templates/, the other files as .Files),
// merges values files over the chart's defaults as Helm coalesces them, executes every template
// with Go's text/template plus sprig and Helm's own functions (engine.go), checks that each
// rendered document parses as YAML, and prints a multi-document stream with a `# Source:` line
// per template, as `helm template` does. It does NOT validate values against values.schema.json
// (the tests do that with Python's jsonschema on the merged values printed by --show-values),
// does not support subcharts, and never talks to a cluster: `lookup` returns an empty map.
//
// Build offline against Debian's Go sources (GOPATH mode):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render ./deploy/helm/render
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var valueFiles, apiVersions stringList
	chartDir := flag.String("chart", "", "chart directory (holding Chart.yaml)")
	release := flag.String("name", "release-name", "release name (.Release.Name)")
	namespace := flag.String("namespace", "default", "release namespace (.Release.Namespace)")
	kubeVersion := flag.String("kube-version", "1.37.0", "Kubernetes version for .Capabilities.KubeVersion")
	showValues := flag.Bool("show-values", false, "print the merged values as JSON instead of the manifests")
	showNotes := flag.Bool("notes", false, "also render templates/NOTES.txt and print it after the manifests")
	flag.Var(&valueFiles, "values", "values file merged over the chart's values.yaml (repeatable, later wins)")
	flag.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions, e.g. monitoring.coreos.com/v1 (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		fail("--chart is required")
	}
	if err := run(*chartDir, *release, *namespace, *kubeVersion, valueFiles, apiVersions, *showValues, *showNotes); err != nil {
		fail(err.Error())
	}
}

func run(chartDir, release, namespace, kubeVersion string, valueFiles, apiVersions []string, showValues, showNotes bool) error {
	chart, err := loadChart(chartDir)
	if err != nil {
		return err
	}
	user := map[string]interface{}{}
	for _, file := range valueFiles {
		overrides, err := readValuesFile(file)
		if err != nil {
			return err
		}
		user = mergeValueFiles(user, overrides)
	}
	values := coalesce(user, chart.Values)
	if showValues {
		out, err := toJSONIndent(values)
		if err != nil {
			return err
		}
		fmt.Println(out)
		return nil
	}
	caps, err := newCapabilities(kubeVersion, apiVersions)
	if err != nil {
		return err
	}
	if err := checkKubeVersion(chart.Metadata, caps); err != nil {
		return err
	}
	top := map[string]interface{}{
		"Chart":        chart.Metadata,
		"Capabilities": caps,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Revision": 1,
			"IsInstall": true, "IsUpgrade": false, "Service": "Helm",
		},
		"Values":    values,
		"Files":     chart.Files,
		"Subcharts": map[string]interface{}{},
	}
	rendered, err := renderTemplates(chart, top)
	if err != nil {
		return err
	}
	return printManifests(rendered, chart.Metadata.Name, showNotes)
}

func printManifests(rendered map[string]string, chartName string, showNotes bool) error {
	names := make([]string, 0, len(rendered))
	for name := range rendered {
		names = append(names, name)
	}
	sort.Strings(names)
	notesName := chartName + "/templates/NOTES.txt"
	var out strings.Builder
	for _, name := range names {
		if name == notesName {
			continue
		}
		for _, doc := range splitDocuments(rendered[name]) {
			if err := checkYAML(doc); err != nil {
				return fmt.Errorf("YAML parse error on %s: %v", name, err)
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, doc)
		}
	}
	if showNotes {
		fmt.Fprintf(&out, "---\n# NOTES: %s\n%s\n", notesName, commentOut(rendered[notesName]))
	}
	_, err := os.Stdout.WriteString(out.String())
	return err
}

// splitDocuments splits one template's output at `---` lines and drops empty documents,
// as Helm's releaseutil.SplitManifests does.
func splitDocuments(text string) []string {
	var docs []string
	var current []string
	flush := func() {
		doc := strings.TrimSpace(strings.Join(current, "\n"))
		if doc != "" && !onlyComments(doc) {
			docs = append(docs, doc)
		}
		current = nil
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.TrimPrefix(line, "---")) == "" {
			flush()
			continue
		}
		current = append(current, line)
	}
	flush()
	return docs
}

func onlyComments(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed != "" && !strings.HasPrefix(trimmed, "#") {
			return false
		}
	}
	return true
}

func commentOut(text string) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i, line := range lines {
		lines[i] = "# " + line
	}
	return strings.Join(lines, "\n")
}

func fail(message string) {
	fmt.Fprintf(os.Stderr, "Error: %s\n", message)
	os.Exit(1)
}
