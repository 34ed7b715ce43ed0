// Loading a chart directory the way Helm's chart loader does, and the .Chart and .Capabilities objects.
//
// Chart.yaml becomes .Chart (the fields of Helm's chart.Metadata), values.yaml the default
// values, templates/* the templates (named "<chart>/templates/<file>"), and every other file not
// excluded by .helmignore becomes .Files. A chart with dependencies (charts/ or Chart.yaml
// `dependencies`) is refused: this renderer does not implement subcharts.
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/Masterminds/semver"
	yaml "gopkg.in/yaml.v2"
)

// Metadata mirrors helm.sh/helm/v3/pkg/chart.Metadata, so .Chart.Name, .Chart.AppVersion ... resolve.
type Metadata struct {
	Name         string                   `yaml:"name" json:"name,omitempty"`
	Home         string                   `yaml:"home" json:"home,omitempty"`
	Sources      []string                 `yaml:"sources" json:"sources,omitempty"`
	Version      string                   `yaml:"version" json:"version,omitempty"`
	Description  string                   `yaml:"description" json:"description,omitempty"`
	Keywords     []string                 `yaml:"keywords" json:"keywords,omitempty"`
	Maintainers  []*Maintainer            `yaml:"maintainers" json:"maintainers,omitempty"`
	Icon         string                   `yaml:"icon" json:"icon,omitempty"`
	APIVersion   string                   `yaml:"apiVersion" json:"apiVersion,omitempty"`
	Condition    string                   `yaml:"condition" json:"condition,omitempty"`
	Tags         string                   `yaml:"tags" json:"tags,omitempty"`
	AppVersion   string                   `yaml:"appVersion" json:"appVersion,omitempty"`
	Deprecated   bool                     `yaml:"deprecated" json:"deprecated,omitempty"`
	Annotations  map[string]string        `yaml:"annotations" json:"annotations,omitempty"`
	KubeVersion  string                   `yaml:"kubeVersion" json:"kubeVersion,omitempty"`
	Dependencies []map[string]interface{} `yaml:"dependencies" json:"dependencies,omitempty"`
	Type         string                   `yaml:"type" json:"type,omitempty"`
	IsRoot       bool                     `yaml:"-" json:"-"`
}

// Maintainer mirrors chart.Maintainer.
type Maintainer struct {
	Name  string `yaml:"name" json:"name,omitempty"`
	Email string `yaml:"email" json:"email,omitempty"`
	URL   string `yaml:"url" json:"url,omitempty"`
}

// Chart is a loaded chart directory.
type Chart struct {
	Metadata  *Metadata
	Values    map[string]interface{}
	Templates map[string]string // "<chart>/templates/<file>" -> text
	Files     Files
}

func loadChart(dir string) (*Chart, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, fmt.Errorf("not a chart directory: %v", err)
	}
	meta := &Metadata{IsRoot: true}
	if err := yaml.Unmarshal(raw, meta); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	if meta.APIVersion != "v2" || meta.Name == "" {
		return nil, fmt.Errorf("Chart.yaml: apiVersion must be v2 and name must be set")
	}
	if _, err := semver.StrictNewVersion(meta.Version); err != nil {
		return nil, fmt.Errorf("Chart.yaml: version %q is not a semantic version: %v", meta.Version, err)
	}
	if len(meta.Dependencies) > 0 {
		return nil, fmt.Errorf("Chart.yaml: dependencies are not supported by this renderer")
	}
	values := map[string]interface{}{}
	if _, err := os.Stat(filepath.Join(dir, "values.yaml")); err == nil {
		if values, err = readValuesFile(filepath.Join(dir, "values.yaml")); err != nil {
			return nil, err
		}
	}
	ignore, err := readHelmignore(filepath.Join(dir, ".helmignore"))
	if err != nil {
		return nil, err
	}
	chart := &Chart{Metadata: meta, Values: values, Templates: map[string]string{}, Files: Files{}}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return walkErr
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if ignore.matches(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if rel == "charts" {
				return fmt.Errorf("charts/: subcharts are not supported by this renderer")
			}
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			chart.Templates[path.Join(meta.Name, rel)] = string(data)
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" || rel == "Chart.lock":
		default:
			chart.Files[rel] = data
		}
		return nil
	})
	return chart, err
}

// helmignore holds .helmignore rules: shell globs on the base name or the relative path,
// a trailing "/" for directories only, "!" to re-include. Lines starting with "#" are comments.
type helmignore []struct {
	pattern string
	dirOnly bool
	negate  bool
}

func readHelmignore(file string) (helmignore, error) {
	raw, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rules helmignore
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		negate := strings.HasPrefix(line, "!")
		line = strings.TrimPrefix(line, "!")
		dirOnly := strings.HasSuffix(line, "/")
		rules = append(rules, struct {
			pattern string
			dirOnly bool
			negate  bool
		}{strings.TrimSuffix(line, "/"), dirOnly, negate})
	}
	return rules, nil
}

func (rules helmignore) matches(rel string, isDir bool) bool {
	ignored := false
	for _, rule := range rules {
		if rule.dirOnly && !isDir {
			continue
		}
		target := rel
		if !strings.Contains(rule.pattern, "/") {
			target = path.Base(rel)
		}
		if ok, _ := path.Match(rule.pattern, target); ok {
			ignored = !rule.negate
		}
	}
	return ignored
}

// KubeVersion mirrors chartutil.KubeVersion (.Capabilities.KubeVersion.Version, .Major, .Minor).
type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (kv *KubeVersion) String() string     { return kv.Version }
func (kv *KubeVersion) GitVersion() string { return kv.Version }

// VersionSet mirrors chartutil.VersionSet: .Capabilities.APIVersions.Has "apps/v1".
type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, known := range v {
		if known == apiVersion {
			return true
		}
	}
	return false
}

// Capabilities mirrors chartutil.Capabilities.
type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// builtinAPIVersions are the group/versions (and group/version/Kind) of a plain cluster that
// `helm template` reports without --api-versions, for the kinds a chart commonly checks.
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2",
	"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1",
	"scheduling.k8s.io/v1", "node.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1", "certificates.k8s.io/v1",
	"events.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1",
	"apps/v1/Deployment", "apps/v1/StatefulSet", "batch/v1/Job", "batch/v1/CronJob",
	"policy/v1/PodDisruptionBudget", "networking.k8s.io/v1/NetworkPolicy",
}

var kubeVersionPattern = regexp.MustCompile(`^v?(\d+)\.(\d+)(\.\d+)?$`)

func newCapabilities(kubeVersion string, extra []string) (*Capabilities, error) {
	parts := kubeVersionPattern.FindStringSubmatch(kubeVersion)
	if parts == nil {
		return nil, fmt.Errorf("--kube-version %q is not MAJOR.MINOR[.PATCH]", kubeVersion)
	}
	patch := parts[3]
	if patch == "" {
		patch = ".0"
	}
	versions := append(VersionSet{}, builtinAPIVersions...)
	versions = append(versions, extra...)
	return &Capabilities{
		KubeVersion: KubeVersion{Version: "v" + parts[1] + "." + parts[2] + patch, Major: parts[1], Minor: parts[2]},
		APIVersions: versions,
		HelmVersion: map[string]string{"Version": "v3.14.0", "GitCommit": "", "GitTreeState": "", "GoVersion": "go1.19"},
	}, nil
}

// checkKubeVersion refuses a Kubernetes version outside Chart.yaml's kubeVersion constraint, as Helm does.
func checkKubeVersion(meta *Metadata, caps *Capabilities) error {
	if meta.KubeVersion == "" {
		return nil
	}
	constraint, err := semver.NewConstraint(meta.KubeVersion)
	if err != nil {
		return fmt.Errorf("Chart.yaml: kubeVersion %q: %v", meta.KubeVersion, err)
	}
	version, err := semver.NewVersion(caps.KubeVersion.Version)
	if err != nil {
		return err
	}
	if !constraint.Check(version) {
		return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", meta.KubeVersion, caps.KubeVersion.Version)
	}
	return nil
}
