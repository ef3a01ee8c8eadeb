package arch

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/imasim/imasim/"

// arrows are the README's: what each layer may import directly. What a
// layer may import, it may also import from below (the closure is taken),
// since dependencies point one way. A layer's own sub-packages (for example
// htable/rcu, tpmext/internal/sm3) belong to it.
var arrows = map[string][]string{
	"tpmext":            nil,
	"htable":            nil,
	"ima/template":      {"tpmext"},
	"ima/eventlog":      {"ima/template", "tpmext"},
	"measlist":          {"ima/template", "htable", "tpmext"},
	"staging":           {"measlist", "ima/template"},
	"staging/collector": {"staging", "ima/eventlog"},
	"staging/fusefs":    {"staging", "staging/collector"},
	"ima":               {"staging", "measlist", "htable", "ima/template", "tpmext"},
}

// tools sit above every layer and may import any of them: the command line
// and report generator, the scenario language (which drives the collector
// too), and the test harnesses under ima/internal.
var tools = []string{"examples", "ima/scenario", "ima/internal"}

// fuseAllowed are the only places a FUSE library may enter.
var fuseAllowed = []string{"staging/fusefs", "examples"}

// layer is the layer a package path (relative to the module) belongs to:
// the longest layer name that is the path or a parent folder of it, or a
// tool name prefixed with "tool:".
func layer(p string) string {
	for _, t := range tools {
		if under(p, t) {
			return "tool:" + t
		}
	}
	best := ""
	for l := range arrows {
		if under(p, l) && len(l) > len(best) {
			best = l
		}
	}
	return best
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// allowed is the closure of arrows from l, l included.
func allowed(l string) map[string]bool {
	out := map[string]bool{}
	var walk func(string)
	walk = func(x string) {
		if out[x] {
			return
		}
		out[x] = true
		for _, y := range arrows[x] {
			walk(y)
		}
	}
	walk(l)
	return out
}

// goList returns, for every package of the module, its non-test imports
// (direct) and all its dependencies (transitive).
func goList(t *testing.T) (imports, deps map[string][]string) {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", module+"...")
	cmd.Dir = "../../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	imports, deps = map[string][]string{}, map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "|")
		if len(parts) != 3 {
			t.Fatalf("go list: unexpected line %q", sc.Text())
		}
		imports[parts[0]] = strings.Fields(parts[1])
		deps[parts[0]] = strings.Fields(parts[2])
	}
	return imports, deps
}

// TestImportGraph checks every package's direct imports of the module's own
// packages against the arrows, and that no FUSE library reaches a package
// outside staging/fusefs and the commands.
func TestImportGraph(t *testing.T) {
	imports, deps := goList(t)
	if len(imports) < 10 {
		t.Fatalf("go list found %d packages; the module has more", len(imports))
	}
	var pkgs []string
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, full := range pkgs {
		p := strings.TrimPrefix(full, module)
		l := layer(p)
		if l == "" {
			t.Errorf("%s belongs to no layer of the README's arrows", p)
			continue
		}
		for _, imp := range imports[full] {
			q, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			ql := layer(q)
			switch {
			case strings.HasPrefix(l, "tool:"):
				// Tools may import any layer, and one another.
			case strings.HasPrefix(ql, "tool:"):
				t.Errorf("%s (layer %s) imports the tool package %s", p, l, q)
			case !allowed(l)[ql]:
				t.Errorf("%s (layer %s) imports %s (layer %s): not an arrow of the README", p, l, q, ql)
			}
		}
		if slices.ContainsFunc(fuseAllowed, func(d string) bool { return under(p, d) }) {
			continue
		}
		for _, d := range deps[full] {
			if strings.Contains(d, "fuse") {
				t.Errorf("%s depends on %s: FUSE belongs in staging/fusefs only", p, d)
			}
		}
	}
}

// TestLayerRules checks the checker on made-up edges, so that it can fail.
func TestLayerRules(t *testing.T) {
	for _, tt := range []struct {
		from, to string
		ok       bool
	}{
		{"measlist", "ima/template", true},
		{"htable/rcu", "htable", true},
		{"staging/collector", "ima/template", true}, // through ima/eventlog
		{"measlist", "staging", false},
		{"tpmext", "ima/template", false},
		{"ima/template", "ima", false},
		{"staging", "staging/collector", false},
		{"ima", "staging/collector", false},
		{"ima/eventlog", "measlist", false},
	} {
		got := allowed(layer(tt.from))[layer(tt.to)]
		if got != tt.ok {
			t.Errorf("%s -> %s allowed = %v, want %v", tt.from, tt.to, got, tt.ok)
		}
	}
	if got := layer("ima/scenario"); got != "tool:ima/scenario" {
		t.Errorf("layer(ima/scenario) = %q, want a tool", got)
	}
	if got := layer("ima/eventlog/internal/gen"); got != "ima/eventlog" {
		t.Errorf("layer(ima/eventlog/internal/gen) = %q, want ima/eventlog", got)
	}
}
