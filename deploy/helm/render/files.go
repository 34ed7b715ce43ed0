// The .Files object: the chart's non-template files, with Helm's Get, GetBytes, Glob, AsConfig,
// AsSecrets and Lines. Glob follows gobwas/glob with "/" as the separator, as Helm uses it:
// `*` and `?` stay within one path segment, `**` crosses segments, `[...]` and `{a,b}` work.
package main

import (
	"encoding/base64"
	"path"
	"regexp"
	"strings"
)

// Files maps a path relative to the chart root to the file's bytes.
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte {
	return f[name]
}

func (f Files) Get(name string) string {
	return string(f.GetBytes(name))
}

func (f Files) Glob(pattern string) Files {
	matcher, err := regexp.Compile(globToRegexp(pattern))
	if err != nil {
		matcher = regexp.MustCompile(".*")
	}
	matched := Files{}
	for name, data := range f {
		if matcher.MatchString(name) {
			matched[name] = data
		}
	}
	return matched
}

func (f Files) AsConfig() string {
	if len(f) == 0 {
		return ""
	}
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = string(data)
	}
	return toYAML(m)
}

func (f Files) AsSecrets() string {
	if len(f) == 0 {
		return ""
	}
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = base64.StdEncoding.EncodeToString(data)
	}
	return toYAML(m)
}

func (f Files) Lines(name string) []string {
	if f[name] == nil {
		return []string{}
	}
	text := string(f[name])
	if strings.HasSuffix(text, "\n") {
		text = text[:len(text)-1]
	}
	return strings.Split(text, "\n")
}

func globToRegexp(pattern string) string {
	var out strings.Builder
	out.WriteString("^")
	inAlternatives := false
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == '*' && i+1 < len(pattern) && pattern[i+1] == '*':
			out.WriteString(".*")
			i++
		case c == '*':
			out.WriteString("[^/]*")
		case c == '?':
			out.WriteString("[^/]")
		case c == '[':
			end := strings.IndexByte(pattern[i:], ']')
			if end < 0 {
				out.WriteString(regexp.QuoteMeta(string(c)))
				continue
			}
			class := pattern[i+1 : i+end]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			out.WriteString("[" + class + "]")
			i += end
		case c == '{':
			inAlternatives = true
			out.WriteString("(?:")
		case c == '}' && inAlternatives:
			inAlternatives = false
			out.WriteString(")")
		case c == ',' && inAlternatives:
			out.WriteString("|")
		case c == '\\' && i+1 < len(pattern):
			i++
			out.WriteString(regexp.QuoteMeta(string(pattern[i])))
		default:
			out.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	out.WriteString("$")
	return out.String()
}
